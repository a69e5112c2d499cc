//! The `netns` backend, as Mininet builds its networks: each mail system in a network namespace
//! of its own, joined by a veth pair to one bridge in the root namespace, optionally with netem
//! delay and loss on its link. Each relay is a real `smtplab relay` process started inside its
//! namespace; the tap captures on the bridge.
//!
//! Teardown is by a guard: namespaces, links and processes go when the run ends, fails or is
//! interrupted. Relays exit by themselves when the runner dies (their stdin closes), and a new
//! run removes namespaces left by a runner that was killed (by their name prefix and the dead
//! owner's pid).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{NetnsError, ScenarioError};

/// Addresses of the netns backend: system i is 10.233.(i/254).(i%254+1); the root namespace is
/// 10.233.255.254 on the bridge.
pub fn address(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 233, (index / 254) as u8, (index % 254 + 1) as u8)
}

pub const ROOT_ADDR: Ipv4Addr = Ipv4Addr::new(10, 233, 255, 254);
const PREFIX: &str = "smtplab";

/// The network and its relay processes. Dropping it tears everything down.
pub struct Network {
    /// `smtplab<pid>`: the bridge, and the prefix of namespace and veth names.
    pub bridge: String,
    namespaces: Vec<String>,
    relays: Vec<(String, Child)>,
}

fn ip(args: &[&str]) -> Result<(), ScenarioError> {
    run("ip", args)
}

fn run(cmd: &str, args: &[&str]) -> Result<(), ScenarioError> {
    let out =
        Command::new(cmd).args(args).output().map_err(ScenarioError::io(format!("{cmd} (is iproute2 installed?)")))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("qdisc kind is unknown") {
        return Err(NetnsError::NoNetem.into());
    }
    Err(NetnsError::Command { command: format!("{cmd} {}", args.join(" ")), stderr: stderr.trim().to_string() }.into())
}

impl Network {
    /// Builds the bridge and one namespace per system, with netem on each link when asked.
    pub fn create(systems: usize, delay_ms: f64, loss_percent: f64) -> Result<Network, ScenarioError> {
        clean_stale();
        let id = std::process::id();
        let bridge = format!("{PREFIX}{id}");
        let mut net = Network { bridge: bridge.clone(), namespaces: Vec::new(), relays: Vec::new() };
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{ROOT_ADDR}/16"), "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        for i in 0..systems {
            let ns = format!("{PREFIX}-{id}-{i}");
            ip(&["netns", "add", &ns])?;
            net.namespaces.push(ns.clone());
            // veth names are at most 15 bytes: "sl" + pid (≤7) + "-" + index (≤5).
            let host_end = format!("sl{id}-{i}");
            let tmp_end = format!("sx{id}-{i}");
            ip(&["link", "add", &host_end, "type", "veth", "peer", "name", &tmp_end])?;
            ip(&["link", "set", &tmp_end, "netns", &ns])?;
            ip(&["-n", &ns, "link", "set", &tmp_end, "name", "eth0"])?;
            ip(&["-n", &ns, "addr", "add", &format!("{}/16", address(i)), "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["link", "set", &host_end, "master", &bridge])?;
            ip(&["link", "set", &host_end, "up"])?;
            if delay_ms > 0.0 || loss_percent > 0.0 {
                run(
                    "tc",
                    &[
                        "qdisc",
                        "add",
                        "dev",
                        &host_end,
                        "root",
                        "netem",
                        "delay",
                        &format!("{delay_ms}ms"),
                        "loss",
                        &format!("{loss_percent}%"),
                    ],
                )?;
            }
        }
        let marker = std::env::temp_dir().join(format!("{PREFIX}-netns-{id}.pid"));
        let _ = std::fs::write(marker, id.to_string());
        Ok(net)
    }

    /// Starts `smtplab relay` inside system `index`'s namespace with `args`, and waits until it
    /// accepts connections on `ready`.
    pub fn start_relay(
        &mut self,
        index: usize,
        exe: &Path,
        args: &[String],
        log: &Path,
        ready: std::net::SocketAddr,
    ) -> Result<(), ScenarioError> {
        let ns = self.namespaces[index].clone();
        let log_file = std::fs::File::create(log).map_err(ScenarioError::io(log.display().to_string()))?;
        let err = log_file.try_clone().map_err(ScenarioError::io(log.display().to_string()))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(exe)
            .arg("relay")
            .args(args)
            .arg("--exit-on-stdin-eof")
            .stdin(Stdio::piped())
            .stdout(log_file)
            .stderr(err)
            .spawn()
            .map_err(ScenarioError::io("ip netns exec smtplab relay"))?;
        self.relays.push((ns, child));
        let deadline = Instant::now() + Duration::from_secs(20);
        // Probe a port the tap does not watch, so readiness checks leave no session in the capture.
        while std::net::TcpStream::connect_timeout(&ready, Duration::from_millis(200)).is_err() {
            if Instant::now() > deadline {
                let output = std::fs::read_to_string(log).unwrap_or_default();
                return Err(NetnsError::RelayNotListening {
                    namespace: self.namespaces[index].clone(),
                    addr: ready,
                    log: log.to_path_buf(),
                    output,
                }
                .into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Asks every relay to stop (by closing its stdin) and waits for it, up to `grace`.
    pub fn stop_relays(&mut self, grace: Duration) {
        for (_, child) in &mut self.relays {
            drop(child.stdin.take());
        }
        let deadline = Instant::now() + grace;
        for (_, child) in &mut self.relays {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        self.relays.clear();
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.stop_relays(Duration::from_secs(5));
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).output();
        let _ = std::fs::remove_file(std::env::temp_dir().join(format!("{PREFIX}-netns-{}.pid", std::process::id())));
    }
}

/// Removes namespaces and bridges of runners that died without cleaning up.
fn clean_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    let alive = |pid: &str| Path::new(&format!("/proc/{pid}")).exists();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(&format!("{PREFIX}-")) else { continue };
        let pid = rest.split('-').next().unwrap_or("");
        if !pid.is_empty() && !alive(pid) {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
            let _ = Command::new("ip").args(["link", "del", &format!("{PREFIX}{pid}")]).output();
        }
    }
}

/// The relay's spool queue length, read from its directory (the relays are other processes).
pub fn queued(spool: &Path) -> usize {
    relay::spool::count_queued(spool)
}

pub fn spool_of(run_dir: &Path, system: &str) -> PathBuf {
    run_dir.join("systems").join(system).join("spool")
}
