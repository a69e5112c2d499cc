//! Test peers: private Postfix instances, swaks, and a relay started in process, all on
//! loopback addresses of their own. Postfix and swaks come from Debian (scripts/test installs
//! them); the tests need root, as Postfix's master does.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use relay::{InboundTls, OutboundTls, Relay, RelayConfig, RelayHandle, StaticResolver, TlsIdentity};

/// A scratch directory removed at drop unless SMTPLAB_KEEP_RUNS is set.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("smtplab-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("scratch dir");
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("SMTPLAB_KEEP_RUNS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A certificate for `host` from a throwaway CA: (chain PEM, key PEM, CA PEM).
pub fn certificate(host: &str) -> (String, String, String) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "smtplab test CA");
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
    let mut leaf = rcgen::CertificateParams::new(vec![host.to_string()]).expect("leaf params");
    leaf.distinguished_name.push(rcgen::DnType::CommonName, host);
    let key = rcgen::KeyPair::generate().expect("leaf key");
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).expect("leaf cert");
    (cert.pem(), key.serialize_pem(), ca_cert.pem())
}

pub fn require(tool: &str) {
    let found = Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().map(|o| o.status.success());
    assert!(found.unwrap_or(false), "{tool} is not installed: run scripts/test, which installs the test peers");
}

/// A private Postfix instance: its own config, queue, data and mail directories.
pub struct Postfix {
    pub dir: PathBuf,
    pub listen: SocketAddr,
    /// A resolv.conf for this instance alone: Postfix asks the system resolver, so its master
    /// starts in a mount namespace of its own where this file is /etc/resolv.conf.
    pub resolv_conf: Option<PathBuf>,
}

/// Lets Postfix's log daemon keep up. Its `postlog` socket is a Unix datagram socket whose queue
/// holds `net.unix.max_dgram_qlen` messages: 10 in a kernel left at its default (no systemd to
/// raise it to 512, as on this kind of machine). When Postfix's daemons log a burst at start-up,
/// postlogd's own message to that socket finds the queue full, and it blocks sending to itself
/// while nothing else reads it: every daemon then blocks on its next log line and the instance
/// hangs (seen in CI: `postfix stop` waiting forever). Raised here, before each instance starts
/// (its sockets take the limit when created); a test that cannot raise it fails and says why.
pub fn let_postlog_keep_up() {
    const KNOB: &str = "/proc/sys/net/unix/max_dgram_qlen";
    const ENOUGH: u32 = 512;
    let now: u32 = std::fs::read_to_string(KNOB).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    if now < ENOUGH {
        std::fs::write(KNOB, ENOUGH.to_string()).unwrap_or_else(|e| {
            panic!(
                "{KNOB} is {now}: Postfix's postlogd can deadlock on a queue that short; raising it to \
                 {ENOUGH} needs root ({e}): run `sysctl -w net.unix.max_dgram_qlen={ENOUGH}`"
            )
        });
    }
}

impl Postfix {
    /// Starts Postfix listening on `listen`, with `main_cf` lines added to a minimal config that
    /// keeps every delivery on loopback. Mail for `virtual_domain` lands in `<dir>/mail/inbox/`.
    pub fn start(dir: &Path, hostname: &str, listen: SocketAddr, main_cf: &[String]) -> Postfix {
        Self::start_with_resolver(dir, hostname, listen, main_cf, None)
    }

    /// [`Postfix::start`] with its own resolv.conf (see [`Postfix::resolv_conf`]).
    pub fn start_with_resolver(
        dir: &Path,
        hostname: &str,
        listen: SocketAddr,
        main_cf: &[String],
        resolv_conf: Option<&Path>,
    ) -> Postfix {
        Self::start_full(dir, hostname, listen, main_cf, &[], resolv_conf)
    }

    /// [`Postfix::start`] with `master_cf` lines added to master.cf: services Debian's master.cf
    /// leaves out, such as `tlsproxy` (which TLS connection reuse needs).
    pub fn start_with_services(
        dir: &Path,
        hostname: &str,
        listen: SocketAddr,
        main_cf: &[String],
        master_cf: &[String],
    ) -> Postfix {
        Self::start_full(dir, hostname, listen, main_cf, master_cf, None)
    }

    fn start_full(
        dir: &Path,
        hostname: &str,
        listen: SocketAddr,
        main_cf: &[String],
        master_cf: &[String],
        resolv_conf: Option<&Path>,
    ) -> Postfix {
        require("postfix");
        let etc = dir.join("etc");
        for d in ["etc", "queue", "data", "mail"] {
            std::fs::create_dir_all(dir.join(d)).expect("postfix dirs");
        }
        let chown = |path: &Path, owner: &str| {
            let ok = Command::new("chown").arg("-R").arg(owner).arg(path).status().map(|s| s.success());
            assert!(ok.unwrap_or(false), "chown {owner} {}", path.display());
        };
        chown(&dir.join("data"), "postfix");
        chown(&dir.join("mail"), "65534:65534");
        let master = std::fs::read_to_string("/etc/postfix/master.cf").expect("Debian's master.cf");
        let master: String = master
            .lines()
            .map(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                if l.starts_with('#') || l.starts_with(' ') || fields.len() < 8 {
                    return l.to_string();
                }
                if fields[0] == "smtp" && fields[1] == "inet" {
                    // The instance listens where the test says, not on port 25.
                    return format!("{listen} inet n - n - - smtpd");
                }
                // Nothing fills Debian's chroot jail in a private instance.
                let mut f: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
                f[4] = "n".into();
                f.join(" ")
            })
            .chain(master_cf.iter().cloned())
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(etc.join("master.cf"), master + "\n").expect("master.cf");
        let d = dir.display();
        let mut main = vec![
            "compatibility_level = 3.6".to_string(),
            format!("queue_directory = {d}/queue"),
            format!("data_directory = {d}/data"),
            "mail_owner = postfix".into(),
            "setgid_group = postdrop".into(),
            format!("myhostname = {hostname}"),
            "inet_interfaces = 127.0.0.1".into(),
            "inet_protocols = ipv4".into(),
            "mydestination =".into(),
            "mynetworks = 127.0.0.0/8".into(),
            "smtpd_relay_restrictions = permit_mynetworks, reject".into(),
            format!("maillog_file = {d}/maillog"),
            format!("maillog_file_prefixes = {d}"),
            "disable_dns_lookups = yes".into(),
            "smtp_dns_support_level = disabled".into(),
            // smtpd looks up each client's name before its greeting; 127.0.x.y is not in
            // /etc/hosts, so the query would leave the machine (and stall 5 s unanswered).
            "smtpd_peername_lookup = no".into(),
            "alias_maps =".into(),
            "alias_database =".into(),
            "biff = no".into(),
            format!("virtual_mailbox_base = {d}/mail"),
            "virtual_mailbox_maps = static:inbox/".into(),
            "virtual_uid_maps = static:65534".into(),
            // Without this the static map above would claim every domain as local.
            "virtual_mailbox_domains =".into(),
            "virtual_gid_maps = static:65534".into(),
            "smtp_tls_loglevel = 1".into(),
            "smtpd_tls_loglevel = 1".into(),
            "smtpd_tls_received_header = yes".into(),
        ];
        main.extend(main_cf.iter().cloned());
        std::fs::write(etc.join("main.cf"), main.join("\n") + "\n").expect("main.cf");
        let pf = Postfix { dir: dir.to_path_buf(), listen, resolv_conf: resolv_conf.map(Path::to_path_buf) };
        let_postlog_keep_up();
        let out = pf.postfix("start");
        assert!(out.0, "postfix start failed: {}\n{}", out.1, pf.log());
        pf.wait_listening();
        pf
    }

    fn postfix(&self, verb: &str) -> (bool, String) {
        // Postfix exits 1 silently when stderr is not a terminal: run it under script(1).
        let mut cmd = format!("postfix -c {} {verb}", self.dir.join("etc").display());
        if let (Some(resolv), "start") = (&self.resolv_conf, verb) {
            require("unshare");
            // util-linux's unshare makes the new namespace's mounts private: the bind mount
            // never reaches the machine's own /etc/resolv.conf.
            cmd = format!("unshare -m sh -c 'mount --bind {} /etc/resolv.conf && {cmd}'", resolv.display());
        }
        let out = Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().expect("script(1)");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect_timeout(&self.listen, Duration::from_millis(200)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("postfix did not listen on {}: {}", self.listen, self.log());
    }

    /// The instance's configuration directory, for `postqueue -c` and the like.
    pub fn config_dir(&self) -> PathBuf {
        self.dir.join("etc")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default()
    }

    /// Waits for `n` messages in the virtual mailbox; returns their bytes.
    pub fn wait_for_mail(&self, n: usize, limit: Duration) -> Vec<Vec<u8>> {
        let new = self.dir.join("mail/inbox/new");
        let deadline = Instant::now() + limit;
        loop {
            let mut files: Vec<PathBuf> =
                std::fs::read_dir(&new).map(|r| r.flatten().map(|e| e.path()).collect()).unwrap_or_default();
            if files.len() >= n || Instant::now() >= deadline {
                files.sort();
                return files.iter().map(|p| std::fs::read(p).expect("mail file")).collect();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = self.postfix("stop");
    }
}

/// Sends one message with swaks (which dot-stuffs and appends the terminator itself).
pub fn swaks(server: SocketAddr, from: &str, to: &str, message: &Path, extra: &[&str]) -> std::process::Output {
    require("swaks");
    Command::new("swaks")
        .args(["--server", &server.to_string(), "--from", from, "--to", to, "--data"])
        .arg(format!("@{}", message.display()))
        .args(extra)
        .output()
        .expect("swaks")
}

/// Relay settings for interop tests.
pub struct RelaySpec {
    pub listen: SocketAddr,
    pub hostname: String,
    pub inbound: InboundTls,
    pub outbound: OutboundTls,
    pub tls: bool,
    pub routes: Vec<(String, SocketAddr)>,
    pub local_domains: Vec<String>,
    pub tls_settings: relay::TlsSettings,
}

pub async fn start_relay(dir: &Path, spec: RelaySpec) -> RelayHandle {
    Relay::start(relay_config(dir, spec)).await.expect("relay starts")
}

/// The configuration [`start_relay`] starts, for a test to change before starting it.
pub fn relay_config(dir: &Path, spec: RelaySpec) -> RelayConfig {
    let mut resolver = StaticResolver::new();
    for (domain, addr) in &spec.routes {
        resolver.add(domain, relay::MxTarget { host: format!("mx.{domain}"), addr: *addr, system: None });
    }
    let tls_identity = spec.tls.then(|| {
        let (cert_chain_pem, key_pem, _) = certificate(&spec.hostname);
        TlsIdentity { cert_chain_pem, key_pem }
    });
    RelayConfig {
        system: "relay".into(),
        hostname: spec.hostname,
        listen: spec.listen,
        submission: None,
        bind: Some(spec.listen.ip()),
        spool: dir.join("spool"),
        local_domains: spec.local_domains,
        relay_domains: Vec::new(),
        // The test peers (swaks from 127.0.0.1, Postfix A from its own 127.0.x.y) use this relay
        // as their smarthost: trusted, as a site's `mynetworks`.
        relay_clients: vec![relay::config::parse_client_network("127.0.0.0/8").expect("network")],
        mailbox_dir: dir.join("mailboxes"),
        tls_identity,
        tls: spec.tls_settings,
        inbound_tls: spec.inbound,
        outbound_tls: spec.outbound,
        outbound_tls_by_domain: Vec::new(),
        mta_sts: None,
        ca_pem: None,
        resolver: Arc::new(resolver),
        records: Some(dir.join("sessions.jsonl")),
        keylog: Some(dir.join("keys.log")),
        limits: Default::default(),
        timeouts: relay::config::Timeouts {
            retry_first: Duration::from_secs(1),
            retry_max: Duration::from_secs(2),
            server_idle: Duration::from_secs(10),
            ..Default::default()
        },
        delivery: Default::default(),
    }
}

pub fn relay_records(dir: &Path) -> Vec<records::SessionRecord> {
    records::read_jsonl(&dir.join("sessions.jsonl")).unwrap_or_default()
}

/// Removes the trace headers MTAs add at the top (Received, Return-Path, Delivered-To,
/// X-Original-To), folded lines included.
pub fn strip_trace_headers(message: &[u8]) -> Vec<u8> {
    let text = message;
    let mut out = Vec::new();
    let mut skipping = false;
    let mut in_headers = true;
    for line in text.split_inclusive(|&b| b == b'\n') {
        if in_headers {
            if line == b"\r\n" || line == b"\n" {
                in_headers = false;
            } else if line.starts_with(b" ") || line.starts_with(b"\t") {
                if skipping {
                    continue;
                }
            } else {
                let name = line.split(|&b| b == b':').next().unwrap_or(b"").to_ascii_lowercase();
                skipping = matches!(name.as_slice(), b"received" | b"return-path" | b"delivered-to" | b"x-original-to");
                if skipping {
                    continue;
                }
            }
        }
        out.extend_from_slice(line);
    }
    out
}

/// LF line ends (Postfix's virtual delivery writes LF), for comparing with what was sent.
pub fn lf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}
