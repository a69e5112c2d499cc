//! The `shadow` backend: the scenario as a simulation of Shadow (github.com/shadow/shadow), the
//! discrete-event network simulator that runs real Linux programs. Each system is a host running
//! the real `smtplab relay` binary with the flags of a netns relay process; a host `injector`
//! at the netns root address runs the traffic generator (`smtplab inject RUN_DIR`); a star
//! network graph gives every system's link the scenario's delay and loss. Time inside is
//! simulated: the run is deterministic, and may hold more systems than one machine emulates in
//! real time. Nothing leaves the machine: the hosts' addresses exist only in the simulation.
//!
//! The capture is made from Shadow's per-host pcaps: every host records what it sends and
//! receives, so each packet is in two files; the merged `capture.pcap` keeps each packet once,
//! from the pcap of the host that sent it, in time order. The tap, the analysis and the report
//! then read the run directory as they read any other.

use std::collections::{BinaryHeap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::error::{ScenarioError, ShadowError};
use crate::netns::ROOT_ADDR;
use crate::pki::Pki;
use crate::progress::say;
use crate::schema::Scenario;

/// Environment variable naming the `shadow` binary, when it is not the installed one.
pub const SHADOW_ENV: &str = "SMTPLAB_SHADOW";
/// Where `scripts/install-shadow` installs by default.
pub const DEFAULT_PREFIX: &str = "/var/cache/shadow";
/// The Shadow host of the traffic generator, at the netns root address (the relays'
/// `--relay-client`).
const INJECTOR_HOST: &str = "injector";
/// Simulated seconds before the injector starts, so every relay listens when the first message
/// comes (a relay starts in well under a simulated second).
const INJECTOR_START_SECS: u64 = 1;
/// Simulated seconds between the relays' SIGINT and the end of the simulation: the relay's own
/// shutdown grace is 10 s.
const SHUTDOWN_GRACE_SECS: u64 = 15;
/// Smallest latency of a graph edge. Shadow refuses 0, and its scheduling rounds are as long as
/// the smallest latency, so a tiny one makes a run crawl: a system pair is then at least 1 ms
/// apart one way (two edges).
const MIN_EDGE_LATENCY_MS: f64 = 0.5;

/// The simulated clock's start as the processes see it, 2000-01-01T00:00:00Z. Shadow dates its
/// pcaps from 1970 instead (the simulated seconds alone); the merge moves them onto the
/// processes' clock, so the capture and the relays' records agree.
const SIMULATION_EPOCH: f64 = 946_684_800.0;

/// What a Shadow run leaves for the runner: as `runner::drive` returns it, plus the capture.
pub struct ShadowRun {
    pub messages: usize,
    pub stuck: Vec<String>,
    pub capture: Option<tap::capture::CaptureStats>,
}

/// The `shadow` binary: `$SMTPLAB_SHADOW`, else `shadow` on the PATH, else the default install.
pub fn find_shadow() -> Result<PathBuf, ScenarioError> {
    locate_shadow(std::env::var_os(SHADOW_ENV))
}

/// [`find_shadow`] with the variable's value given.
fn locate_shadow(from_env: Option<std::ffi::OsString>) -> Result<PathBuf, ScenarioError> {
    if let Some(p) = from_env {
        let p = PathBuf::from(p);
        return if p.is_file() { Ok(p) } else { Err(ShadowError::NotAFile { variable: SHADOW_ENV, path: p }.into()) };
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|d| d.join("shadow")).find(|p| p.is_file()))
        .unwrap_or_default();
    let default = Path::new(DEFAULT_PREFIX).join("bin/shadow");
    let found = on_path.or_else(|| default.is_file().then_some(default));
    Ok(found.ok_or(ShadowError::NotInstalled { variable: SHADOW_ENV, prefix: DEFAULT_PREFIX })?)
}

/// Runs the scenario under Shadow into `run_dir` (made and with its manifest written by the
/// runner): relays' certificates and flags, the Shadow configuration, the simulation, the merged
/// capture and what stayed queued.
pub fn run(s: &Scenario, run_dir: &Path, smtplab: Option<&Path>) -> Result<ShadowRun, ScenarioError> {
    let shadow = find_shadow()?;
    let exe = smtplab.ok_or(ScenarioError::NoRelayExecutable { backend: "shadow" })?;
    let exe = std::fs::canonicalize(exe).map_err(ScenarioError::io(exe.display().to_string()))?;
    let run_dir = std::fs::canonicalize(run_dir).map_err(ScenarioError::io(run_dir.display().to_string()))?;
    let pki = Pki::new(&s.scenario.name)?;
    pki.write_ca(&run_dir.join("pki"))?;
    let mut relay_args = Vec::new();
    for (i, sys) in s.systems.iter().enumerate() {
        let dir = run_dir.join("systems").join(&sys.name);
        std::fs::create_dir_all(&dir).map_err(ScenarioError::io(dir.display().to_string()))?;
        let identity = if sys.starttls {
            let (cert_chain_pem, key_pem) = pki.issue(&sys.mx_host())?;
            Some(relay::TlsIdentity { cert_chain_pem, key_pem })
        } else {
            None
        };
        relay_args.push(crate::relay_args::process_args(s, i, &dir, &run_dir.join("pki/ca.pem"), identity.as_ref())?);
    }
    let sim_dir = run_dir.join("shadow");
    std::fs::create_dir_all(&sim_dir).map_err(ScenarioError::io(sim_dir.display().to_string()))?;
    let config = config(s, &exe, &run_dir, &relay_args);
    let config_path = sim_dir.join("shadow.yaml");
    // JSON is YAML 1.2, which Shadow reads: no YAML writer needed.
    let text = serde_json::to_string_pretty(&config).map_err(ScenarioError::serialize("the Shadow configuration"))?;
    std::fs::write(&config_path, text).map_err(ScenarioError::io(config_path.display().to_string()))?;

    let stop = stop_secs(s);
    say(&format!(
        "simulating {} systems under Shadow ({} simulated seconds at most; {})",
        s.systems.len(),
        stop,
        shadow.display()
    ));
    simulate(&shadow, &config_path, &sim_dir, wall_limit(stop))?;

    let submissions_path = run_dir.join("truth/submissions.jsonl");
    let messages =
        records::read_jsonl::<records::Submission>(&submissions_path).map_err(ShadowError::Submissions)?.len();
    let capture = if s.tap.capture == "live" {
        say("merging the hosts' pcaps into capture.pcap");
        Some(merge_pcaps(s, &sim_dir.join("shadow.data/hosts"), &run_dir.join("capture.pcap"))?)
    } else {
        None
    };
    let stuck = s
        .systems
        .iter()
        .enumerate()
        .flat_map(|(i, sys)| {
            relay::spool::Spool::open(&crate::netns::spool_of(&run_dir, &sys.name))
                .and_then(|sp| sp.list())
                .unwrap_or_default()
                .into_iter()
                .map(move |env| {
                    format!("{}: {} <{}> -> {}", s.systems[i].name, env.qid, env.message_id, env.pending.join(", "))
                })
        })
        .collect();
    Ok(ShadowRun { messages, stuck, capture })
}

/// The traffic generator as a process of the simulation (`smtplab inject RUN_DIR`): reads the
/// run's `scenario.toml`, submits its traffic to every system's submission port as the loopback
/// runner does, and writes `truth/messages.jsonl` and `truth/submissions.jsonl` (times are
/// Shadow's simulated clock, which starts at 2000-01-01). Returns the number submitted.
pub fn inject(run_dir: &Path) -> Result<usize, ScenarioError> {
    let path = run_dir.join("scenario.toml");
    let text = std::fs::read_to_string(&path).map_err(ScenarioError::io(path.display().to_string()))?;
    let s = Scenario::parse_generated(&text, &path.display().to_string())?;
    let users = Arc::new(crate::traffic::users(&s));
    // One thread for the submitters (and the generator's blocking one): fewer threads for
    // Shadow to schedule, and the submitters wait on the network, not the CPU.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ScenarioError::io("tokio runtime"))?;
    let submitted = runtime.block_on(crate::submission::submit_all(
        &s,
        users,
        &run_dir.join("truth/messages.jsonl"),
        // Plain submission: the schema refuses REQUIRETLS traffic on this backend.
        None,
    ));
    let submissions: Vec<records::Submission> =
        submitted.times.iter().map(|(&seq, &submitted_at)| records::Submission { seq, submitted_at }).collect();
    // What was accepted is kept even when a later submission failed.
    records::write_jsonl(&run_dir.join("truth/submissions.jsonl"), &submissions)?;
    match submitted.error {
        Some(e) => Err(e),
        None => Ok(submissions.len()),
    }
}

/// The Shadow configuration (as JSON, which is YAML): one host per system on its own graph
/// node, the injector on the hub.
fn config(s: &Scenario, exe: &Path, run_dir: &Path, relay_args: &[Vec<String>]) -> serde_json::Value {
    let stop = stop_secs(s);
    let shutdown = stop - SHUTDOWN_GRACE_SECS;
    let env = json!({"RUST_BACKTRACE": "1"});
    let mut hosts = serde_json::Map::new();
    for (i, args) in relay_args.iter().enumerate() {
        let mut argv = vec!["relay".to_string()];
        argv.extend(args.iter().cloned());
        // aws-lc-rs, the relay's default crypto, aborts the process (SIGABRT from inside the
        // library, no Rust panic) at its first TLS handshake under Shadow; ring runs.
        argv.extend(["--tls-provider".to_string(), "ring".to_string()]);
        hosts.insert(
            host_name(i),
            json!({
                "network_node_id": i + 1,
                "ip_addr": s.address(i).to_string(),
                "processes": [{
                    "path": exe.display().to_string(),
                    "args": argv,
                    "environment": env,
                    "start_time": "0 s",
                    // SIGINT is the relay's Ctrl-C: it stops listening, finishes its sessions
                    // and exits 0 with its records flushed.
                    "shutdown_time": format!("{shutdown} s"),
                    "shutdown_signal": "SIGINT",
                    "expected_final_state": {"exited": 0},
                }],
            }),
        );
    }
    hosts.insert(
        INJECTOR_HOST.into(),
        json!({
            "network_node_id": 0,
            "ip_addr": ROOT_ADDR.to_string(),
            "processes": [{
                "path": exe.display().to_string(),
                "args": ["inject", run_dir.display().to_string()],
                "environment": env,
                "start_time": format!("{INJECTOR_START_SECS} s"),
                "expected_final_state": {"exited": 0},
            }],
        }),
    );
    json!({
        "general": {
            "stop_time": format!("{stop} s"),
            "seed": s.scenario.seed,
            "data_directory": run_dir.join("shadow/shadow.data").display().to_string(),
            "log_level": "warning",
            // Threads that wait by spinning (tokio's workers, rustls' locks) would stall the
            // simulated clock without it (Shadow's documentation, "busy loops").
            "model_unblocked_syscall_latency": true,
        },
        // Shadow's own TCP stack numbers the segments of its pcaps one by one, not by byte, which
        // no reassembler (the tap's, tshark's) can follow; the newer Rust stack numbers bytes.
        // It leaves ioctl on sockets unimplemented (a panic of Shadow): smtplab's processes make
        // none, but Perl ones (swaks) do.
        "experimental": {"use_new_tcp": true},
        "network": {"graph": {"type": "gml", "inline": graph(s)}},
        "host_option_defaults": {"pcap_enabled": s.tap.capture == "live"},
        "hosts": hosts,
    })
}

/// Shadow host names follow hostname(7); system names may hold `_`, so hosts are numbered.
fn host_name(index: usize) -> String {
    format!("sys{index}")
}

/// A star: node 0 is the hub (the injector's host), node i + 1 system i's. Each system's link is
/// one edge to the hub carrying half the scenario's one-way delay and the loss that, taken
/// twice, gives the scenario's loss between two systems, as netem on both veths does.
fn graph(s: &Scenario) -> String {
    let half_ms = (s.network.delay_ms / 2.0).max(MIN_EDGE_LATENCY_MS);
    let p = s.network.loss_percent / 100.0;
    let edge_loss = 1.0 - (1.0 - p).sqrt();
    let mut g = String::from("graph [\n  directed 0\n");
    for id in 0..=s.systems.len() {
        g.push_str(&format!(
            "  node [\n    id {id}\n    host_bandwidth_down \"1 Gbit\"\n    host_bandwidth_up \"1 Gbit\"\n  ]\n"
        ));
    }
    let edge = |g: &mut String, a: usize, b: usize| {
        g.push_str(&format!(
            "  edge [\n    source {a}\n    target {b}\n    latency \"{} us\"\n    packet_loss {edge_loss:.9}\n  ]\n",
            (half_ms * 1000.0).round() as u64
        ));
    };
    // The hub's own loop: Shadow wants a path between any two nodes, a node and itself included.
    edge(&mut g, 0, 0);
    for i in 1..=s.systems.len() {
        edge(&mut g, 0, i);
        edge(&mut g, i, i);
    }
    g.push_str("]\n");
    g
}

/// Simulated seconds of the run: the injector's start, the traffic, the drain timeout and the
/// relays' shutdown. The traffic lasts its `duration`, or its messages at `rate`; at rate 0 (as
/// fast as the relays accept) it is bounded by one submitter sending every message in turn,
/// each taking [`ROUND_TRIPS_PER_SUBMISSION`] round trips between injector and system (the
/// simulation costs no CPU time, so only the network delays it).
fn stop_secs(s: &Scenario) -> u64 {
    let t = &s.traffic;
    let rtt = 4.0 * (s.network.delay_ms / 2.0).max(MIN_EDGE_LATENCY_MS) / 1000.0;
    let span = match t.duration {
        Some(d) => d,
        None if t.rate > 0.0 => t.message_count() as f64 / t.rate,
        None => t.message_count() as f64 * ROUND_TRIPS_PER_SUBMISSION * rtt,
    };
    INJECTOR_START_SECS + span.ceil().min(1e9) as u64 + s.scenario.drain_timeout + SHUTDOWN_GRACE_SECS
}

/// Round trips of one submission (EHLO, MAIL, RCPT × 3, DATA, the message, its 250, with room for
/// reconnections and TCP's slow start), for the length of traffic at rate 0.
const ROUND_TRIPS_PER_SUBMISSION: f64 = 20.0;

/// How long Shadow may take in wall time: generous (a simulation may run slower than real time
/// on a loaded machine), but bounded.
fn wall_limit(stop_secs: u64) -> Duration {
    Duration::from_secs(600 + 20 * stop_secs)
}

/// Runs Shadow on `config` in `dir`, its output in `dir/shadow.log`; on failure, the error names
/// the processes that failed and their last lines of stderr.
fn simulate(shadow: &Path, config: &Path, dir: &Path, limit: Duration) -> Result<(), ScenarioError> {
    let log_path = dir.join("shadow.log");
    let log = std::fs::File::create(&log_path).map_err(ScenarioError::io(log_path.display().to_string()))?;
    let err = log.try_clone().map_err(ScenarioError::io(log_path.display().to_string()))?;
    let mut child = Command::new(shadow)
        .arg(config)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(ScenarioError::io(format!("starting {}", shadow.display())))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(ScenarioError::io("waiting for shadow"))? {
            break status;
        }
        if started.elapsed() > limit || crate::interrupt::interrupted() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ShadowError::Stopped {
                secs: started.elapsed().as_secs_f64(),
                interrupted: crate::interrupt::interrupted(),
                log: log_path,
            }
            .into());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if status.success() {
        return Ok(());
    }
    let log_text = std::fs::read_to_string(&log_path).unwrap_or_default();
    // Shadow's own summary ("** ...") and its errors, without the backtraces it logs with them.
    let mut detail = log_text
        .lines()
        .filter(|l| l.starts_with("** ") || (l.contains("[ERROR]") && !l.contains("shadow::export")))
        .take(20)
        .collect::<Vec<_>>()
        .join("\n");
    // Each process's stderr is a file of its host's directory (e.g. sys0/smtplab.1000.stderr).
    for f in process_outputs(&dir.join("shadow.data/hosts"), "stderr") {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        if let Some(last) = text.lines().rev().find(|l| l.contains("rror")) {
            detail.push_str(&format!("\n{}: {last}", f.display()));
        }
    }
    Err(ShadowError::Failed { status, log: log_path, data: dir.join("shadow.data"), detail }.into())
}

fn process_outputs(hosts: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(hosts)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|h| std::fs::read_dir(h.path()).into_iter().flatten().flatten())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    out
}

/// One frame waiting in the merge: ordered by time, then by host, so equal times keep a fixed
/// order.
struct Pending {
    ts: f64,
    host: usize,
    frame: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    // Reversed: BinaryHeap is a max-heap, the merge wants the earliest first.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.ts.total_cmp(&self.ts).then(other.host.cmp(&self.host))
    }
}

/// Merges the hosts' `eth0.pcap` files into one capture as the live tap would have made it:
/// each packet once (from its sender's file), only the tap's ports, only tapped links.
pub fn merge_pcaps(s: &Scenario, hosts_dir: &Path, out: &Path) -> Result<tap::capture::CaptureStats, ScenarioError> {
    let mut hosts: Vec<(Ipv4Addr, PathBuf)> =
        (0..s.systems.len()).map(|i| (s.address(i), hosts_dir.join(host_name(i)).join("eth0.pcap"))).collect();
    // The injector's lines are the access lines: in the capture only when the tap watches them.
    if s.tap.access_lines {
        hosts.push((ROOT_ADDR, hosts_dir.join(INJECTOR_HOST).join("eth0.pcap")));
    }
    let ports: Vec<u16> = if s.tap.access_lines {
        vec![s.network.smtp_port, s.network.submission_port]
    } else {
        vec![s.network.smtp_port]
    };
    let tapped: Option<HashSet<(Ipv4Addr, Ipv4Addr)>> = s.tapped_links().map(|pairs| {
        pairs.iter().flat_map(|&(a, b)| [(s.address(a), s.address(b)), (s.address(b), s.address(a))]).collect()
    });
    let keep = |own: Ipv4Addr, frame: &[u8]| -> bool {
        let Ok(ip) = etherparse::SlicedPacket::from_ip(frame) else { return false };
        let Some(etherparse::NetSlice::Ipv4(v4)) = &ip.net else { return false };
        let (src, dst) = (v4.header().source_addr(), v4.header().destination_addr());
        let Some(etherparse::TransportSlice::Tcp(tcp)) = &ip.transport else { return false };
        src == own
            && (ports.contains(&tcp.source_port()) || ports.contains(&tcp.destination_port()))
            && tapped.as_ref().is_none_or(|t| t.contains(&(src, dst)))
    };
    let mut readers = Vec::with_capacity(hosts.len());
    for (_, path) in &hosts {
        let file = std::fs::File::open(path).map_err(ScenarioError::io(format!("Shadow's pcap {}", path.display())))?;
        // Plain buffered reads: `from_file` gives each file a read-ahead thread, too many for
        // a thousand hosts.
        let reader = tap::pcapfile::Reader::new(std::io::BufReader::new(file))
            .map_err(|source| ShadowError::Pcap { path: path.clone(), source })?;
        readers.push(reader);
    }
    let next = |readers: &mut Vec<tap::pcapfile::Reader<std::io::BufReader<std::fs::File>>>,
                host: usize|
     -> Result<Option<Pending>, ScenarioError> {
        loop {
            let packet = readers[host]
                .next_packet()
                .map_err(|source| ShadowError::Pcap { path: hosts[host].1.clone(), source })?;
            let Some(p) = packet else { return Ok(None) };
            if p.linktype != tap::pcapwrite::LinkKind::RawIp.dlt() {
                return Err(ShadowError::PcapLinkType { path: hosts[host].1.clone(), linktype: p.linktype }.into());
            }
            if keep(hosts[host].0, p.data) {
                let ts = if p.ts < SIMULATION_EPOCH { p.ts + SIMULATION_EPOCH } else { p.ts };
                return Ok(Some(Pending { ts, host, frame: p.data.to_vec() }));
            }
        }
    };
    let mut heap = BinaryHeap::new();
    for host in 0..hosts.len() {
        if let Some(p) = next(&mut readers, host)? {
            heap.push(p);
        }
    }
    let file = std::fs::File::create(out).map_err(ScenarioError::io(out.display().to_string()))?;
    let io = |e| ScenarioError::Io { what: out.display().to_string(), source: e };
    let mut writer =
        tap::pcapwrite::PcapWriter::new(std::io::BufWriter::new(file), tap::pcapwrite::LinkKind::RawIp).map_err(io)?;
    let mut stats = tap::capture::CaptureStats::default();
    while let Some(p) = heap.pop() {
        writer.write_frame(p.ts, &p.frame).map_err(io)?;
        stats.packets_written += 1;
        stats.bytes_written += p.frame.len() as u64;
        if let Some(n) = next(&mut readers, p.host)? {
            heap.push(n);
        }
    }
    std::io::Write::flush(&mut writer.into_inner()).map_err(io)?;
    Ok(stats)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn scenario(extra: &str) -> Scenario {
        let text = crate::DEFAULT_SCENARIO.replace("backend = \"loopback\"", &format!("backend = \"shadow\"\n{extra}"));
        Scenario::parse(&text, "test").unwrap()
    }

    #[test]
    fn graph_splits_delay_and_loss_over_the_two_edges_between_systems() {
        // Loss is refused by the schema for now (no retransmission in Shadow's Rust TCP); the
        // graph already carries it for when it is allowed.
        let mut s = scenario("delay_ms = 20.0");
        s.network.loss_percent = 19.0;
        let g = graph(&s);
        // 20 ms one way between two systems: 10 ms on each system's edge to the hub.
        assert!(g.contains("latency \"10000 us\""), "{g}");
        // Losing 19% end to end is surviving 0.81 = 0.9 × 0.9: 10% on each edge.
        let loss: f64 = g.lines().find_map(|l| l.trim().strip_prefix("packet_loss ")).unwrap().parse().unwrap();
        assert!((loss - 0.1).abs() < 1e-9, "{loss}");
        assert_eq!(g.matches("node [").count(), s.systems.len() + 1);
        assert_eq!(g.matches("edge [").count(), 2 * s.systems.len() + 1);
    }

    #[test]
    fn zero_delay_becomes_the_smallest_latency_shadow_runs_well_with() {
        let g = graph(&scenario(""));
        assert!(g.contains("latency \"500 us\""), "{g}");
    }

    #[test]
    fn shadow_hosts_use_the_netns_addresses() {
        let s = scenario("");
        assert_eq!(s.address(0), Ipv4Addr::new(10, 233, 0, 1));
        let c = config(&s, Path::new("/x/smtplab"), Path::new("/r"), &vec![Vec::new(); s.systems.len()]);
        assert_eq!(c["hosts"]["sys0"]["ip_addr"], "10.233.0.1");
        assert_eq!(c["hosts"]["injector"]["ip_addr"], ROOT_ADDR.to_string());
        assert_eq!(c["hosts"]["injector"]["processes"][0]["args"], json!(["inject", "/r"]));
    }

    #[test]
    fn a_dns_server_is_refused_with_what_to_do() {
        let text = crate::DEFAULT_SCENARIO
            .replace("backend = \"loopback\"", "backend = \"shadow\"")
            .replace("[network]", "[network]\ndns = \"server\"");
        let e = Scenario::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(e.contains("in-process"), "{e}");
    }

    #[test]
    fn loss_is_refused_with_why_and_what_to_do() {
        let text =
            crate::DEFAULT_SCENARIO.replace("backend = \"loopback\"", "backend = \"shadow\"\nloss_percent = 1.0");
        let e = Scenario::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(e.contains("loss_percent = 0") && e.contains("netns"), "{e}");
    }

    #[test]
    fn a_missing_shadow_binary_says_how_to_install_it() {
        let e = locate_shadow(Some("/nonexistent/shadow".into())).unwrap_err();
        let text = e.to_string();
        match e {
            ScenarioError::Shadow(ShadowError::NotAFile { variable, path }) => {
                assert_eq!((variable, path), ("SMTPLAB_SHADOW", PathBuf::from("/nonexistent/shadow")));
            }
            e => panic!("expected NotAFile, got {e}"),
        }
        assert!(text.contains("scripts/install-shadow") && text.contains("/nonexistent/shadow"), "{text}");
    }
}
