//! Interop: Postfix with postfix-mta-sts-resolver (both from Debian's packages) enforcing the
//! MTA-STS policy that smtplab publishes: the scenario's DNS server (on port 53, as a stub
//! resolver asks) holds `_mta-sts.beta.example` TXT and the MX, beta's policy server serves an
//! `enforce` policy over HTTPS on port 443 with a certificate from the scenario CA, and beta is an
//! smtplab relay. Postfix and the resolver daemon each run in a private mount namespace whose
//! `/etc/resolv.conf` names the scenario's DNS server (nothing of the host's is changed), the
//! daemon trusting the scenario CA through `SSL_CERT_FILE`.
//!
//! Expected, from Postfix's own log and smtplab's records: with a clean path Postfix delivers
//! over TLS verified for `mx.beta.example` (the policy's `secure match=`); with a STARTTLS-stripping
//! attacker in front of beta's MX, Postfix defers ("TLS is required") and the attacker reads
//! nothing. Needs root (ports 53 and 443, mount namespaces), as CI has.

#[path = "../../relay/tests/common/mod.rs"]
mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use records::{AttackerSession, SessionRecord, read_jsonl};
use relay::{Relay, RelayConfig, TlsIdentity};
use scenarios::Scenario;
use scenarios::inject::{Submission, Submitter};
use scenarios::pki::Pki;

fn require(tool: &str) {
    let found = Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().map(|o| o.status.success());
    assert!(found.unwrap_or(false), "{tool} is not installed: run scripts/test, which installs the test peers");
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// The shell command running `script` in a new mount namespace (private: nothing leaks to the
/// host) whose /etc/resolv.conf is `resolv`. Paths here are temporary directories: no quotes.
fn in_namespace(resolv: &Path, script: &str) -> String {
    format!("unshare -m sh -c 'mount --bind {} /etc/resolv.conf && {script}'", resolv.display())
}

struct Peers {
    dir: PathBuf,
    daemon: Child,
}

impl Peers {
    /// Starts postfix-mta-sts-resolver on `socketmap` and Postfix listening on `listen`, both
    /// resolving through `dns`, Postfix sending mail for beta.example to its MX on `smtp_port`.
    fn start(dir: &Path, dns: SocketAddr, ca_pem: &str, socketmap: u16, listen: SocketAddr, smtp_port: u16) -> Peers {
        require("postfix");
        require("mta-sts-daemon");
        require("unshare");
        std::fs::create_dir_all(dir).expect("dir");
        let resolv = dir.join("resolv.conf");
        std::fs::write(&resolv, format!("nameserver {}\noptions timeout:2 attempts:2\n", dns.ip())).expect("resolv");
        std::fs::write(dir.join("ca.pem"), ca_pem).expect("ca");
        std::fs::write(
            dir.join("mta-sts.yml"),
            format!(
                "host: 127.0.0.1\nport: {socketmap}\nreuse_port: true\nshutdown_timeout: 5\ncache:\n  type: internal\n  \
                 options:\n    cache_size: 100\ndefault_zone:\n  strict_testing: false\n  timeout: 4\n"
            ),
        )
        .expect("daemon config");
        let log = std::fs::File::create(dir.join("mta-sts-daemon.log")).expect("log");
        let script = format!(
            "exec env SSL_CERT_FILE={ca} mta-sts-daemon -c {cfg} -v debug",
            ca = dir.join("ca.pem").display(),
            cfg = dir.join("mta-sts.yml").display()
        );
        // `sh -c "exec unshare ..."`, and unshare and the inner sh exec too: the child's pid is
        // the daemon's, so killing the child stops it.
        let daemon = Command::new("sh")
            .args(["-c", &format!("exec {}", in_namespace(&resolv, &script))])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start mta-sts-daemon");
        let peers = Peers { dir: dir.to_path_buf(), daemon };
        peers.wait_listening(SocketAddr::from((Ipv4Addr::LOCALHOST, socketmap)), "mta-sts-daemon");
        peers.write_postfix_config(listen, socketmap, smtp_port);
        common::let_postlog_keep_up();
        let cmd = in_namespace(&resolv, &format!("postfix -c {} start", dir.join("etc").display()));
        // Postfix exits 1 silently when stderr is not a terminal: run it under script(1). Its
        // master daemon stays in the namespace, and so do the smtp processes it starts.
        let out = Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().expect("script(1)");
        assert!(out.status.success(), "postfix start: {}\n{}", String::from_utf8_lossy(&out.stdout), peers.log());
        peers.wait_listening(listen, "postfix");
        peers
    }

    fn write_postfix_config(&self, listen: SocketAddr, socketmap: u16, smtp_port: u16) {
        let dir = &self.dir;
        let etc = dir.join("etc");
        for d in ["etc", "queue", "data"] {
            std::fs::create_dir_all(dir.join(d)).expect("postfix dirs");
        }
        let ok = Command::new("chown").args(["-R", "postfix"]).arg(dir.join("data")).status().map(|s| s.success());
        assert!(ok.unwrap_or(false), "chown postfix");
        let master = std::fs::read_to_string("/etc/postfix/master.cf").expect("Debian's master.cf");
        let master: String = master
            .lines()
            .map(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                if l.starts_with('#') || l.starts_with(' ') || fields.len() < 8 {
                    return l.to_string();
                }
                if fields[0] == "smtp" && fields[1] == "inet" {
                    return format!("{listen} inet n - n - - smtpd");
                }
                let mut f: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
                f[4] = "n".into();
                f.join(" ")
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(etc.join("master.cf"), master + "\n").expect("master.cf");
        // MX lookups on: the next hop is beta.example's MX found through the scenario's DNS, on
        // smtplab's SMTP port; the TLS policy comes from the resolver daemon's socketmap, keyed
        // by that next hop ("beta.example:PORT", which the daemon reads as beta.example).
        std::fs::write(dir.join("transport"), format!("beta.example smtp:beta.example:{smtp_port}\n"))
            .expect("transport");
        let d = dir.display();
        let main = [
            "compatibility_level = 3.6".to_string(),
            format!("queue_directory = {d}/queue"),
            format!("data_directory = {d}/data"),
            "mail_owner = postfix".into(),
            "setgid_group = postdrop".into(),
            "myhostname = mx.postfix-sts.example".into(),
            "inet_interfaces = 127.0.0.1".into(),
            "inet_protocols = ipv4".into(),
            "mydestination =".into(),
            "mynetworks = 127.0.0.0/8".into(),
            "smtpd_relay_restrictions = permit_mynetworks, reject".into(),
            format!("maillog_file = {d}/maillog"),
            format!("maillog_file_prefixes = {d}"),
            "smtpd_peername_lookup = no".into(),
            "alias_maps =".into(),
            "alias_database =".into(),
            "biff = no".into(),
            format!("transport_maps = texthash:{d}/transport"),
            "smtp_tls_security_level = may".into(),
            format!("smtp_tls_policy_maps = socketmap:inet:127.0.0.1:{socketmap}:postfix"),
            format!("smtp_tls_CAfile = {d}/ca.pem"),
            "smtp_tls_loglevel = 1".into(),
            // Retry quickly: the test waits for the deferral, not the retry.
            "minimal_backoff_time = 300s".into(),
        ];
        std::fs::write(etc.join("main.cf"), main.join("\n") + "\n").expect("main.cf");
    }

    fn wait_listening(&self, addr: SocketAddr, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{what} did not listen on {addr}: {}\n{}", self.log(), self.daemon_log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default()
    }

    fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mta-sts-daemon.log")).unwrap_or_default()
    }

    /// Waits (bounded) until Postfix's log has a line containing `what`.
    fn wait_log(&self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| l.contains(what)) {
                return line.to_string();
            }
            assert!(Instant::now() < deadline, "no {what:?} in Postfix's log:\n{log}\n{}", self.daemon_log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        let cmd = format!("postfix -c {} stop", self.dir.join("etc").display());
        let _ = Command::new("script").args(["-qec", &cmd, "/dev/null"]).output();
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// Runs Postfix → beta (enforce) with `attack` (a TOML fragment, may be empty) until Postfix's
/// log has `settle`; returns that log, beta's records and the attacker's.
fn run(
    name: &str,
    octet: u8,
    port: u16,
    attack: &str,
    settle: &str,
) -> (String, Vec<SessionRecord>, Vec<AttackerSession>) {
    assert!(is_root(), "ports 53 and 443 and mount namespaces need root (CI runs as root)");
    let attack = if attack.is_empty() {
        String::new()
    } else {
        format!("[[attacks]]\n{attack}\ndomains = [\"beta.example\"]\n")
    };
    let text = format!(
        r#"
[scenario]
name = "postfix-sts-{name}"

[network]
smtp_port = {port}
submission_port = {sub}
dns = "server"
dns_port = 53
https_port = 443

[tap]
capture = "none"

[[systems]]
name = "alpha"
domain = "alpha.example"
address = "127.0.{octet}.1"
starttls = true

[[systems]]
name = "beta"
domain = "beta.example"
address = "127.0.{next}.1"
starttls = true
mta_sts_policy = {{ mode = "enforce", id = "pf1" }}

{attack}
"#,
        sub = port + 1,
        next = octet + 1,
    );
    let s = Scenario::parse(&text, name).expect("valid scenario");
    let dir = std::env::temp_dir().join(format!("smtplab-postfix-sts-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let result = rt.block_on(async {
        let pki = Pki::new(&s.scenario.name).expect("CA");
        let dns = scenarios::dns::Dns::start(&s, port, &[]).await.expect("DNS");
        let policies = scenarios::mta_sts::PolicyServers::start(&s, &pki).await.expect("policy server");
        let attack_on: scenarios::attack::TrafficStart = Default::default();
        let _ = attack_on.set(Instant::now());
        let attackers = scenarios::attack::Attackers::start(&s, &pki, port, &dir, attack_on).await.expect("attacker");
        let beta = Relay::start(beta_config(&s, &pki, &dns, &dir)).await.expect("beta");
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, port + 5));
        let dns_addr = s.dns_server().expect("DNS server");
        let peers = tokio::task::block_in_place(|| {
            Peers::start(&dir.join("postfix"), dns_addr, &pki.ca_pem, port + 6, listen, s.network.smtp_port)
        });
        let body = format!("Message-ID: <pf-{name}@alpha.example>\r\nSubject: sts\r\n\r\npolicy or not\r\n");
        let mut c = Submitter::connect(listen, "client").await.expect("connect to Postfix");
        c.submit(&Submission {
            from: "a@alpha.example",
            to: vec!["b@beta.example"],
            bytes: body.as_bytes(),
            requiretls: false,
        })
        .await
        .expect("Postfix accepted");
        c.quit().await;
        tokio::task::block_in_place(|| peers.wait_log(settle));
        let log = peers.log();
        let _ = beta.wait_idle(Duration::from_secs(30)).await;
        beta.shutdown(Duration::from_secs(5)).await;
        drop(peers);
        attackers.stop(Duration::from_secs(5)).await;
        policies.stop().await;
        dns.stop().await;
        log
    });
    let beta: Vec<SessionRecord> = read_jsonl(&dir.join("beta/sessions.jsonl")).unwrap_or_default();
    let attacker: Vec<AttackerSession> =
        read_jsonl(&dir.join("attackers/attacker1/sessions.jsonl")).unwrap_or_default();
    if std::env::var_os("SMTPLAB_KEEP_RUNS").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    (result, beta, attacker)
}

fn beta_config(s: &Scenario, pki: &Pki, dns: &scenarios::dns::Dns, dir: &Path) -> RelayConfig {
    let sys = &s.systems[1];
    let ip = IpAddr::V4(s.address(1));
    let (cert_chain_pem, key_pem) = pki.issue(&sys.mx_host()).expect("certificate");
    let home = dir.join(&sys.name);
    RelayConfig {
        system: sys.name.clone(),
        hostname: sys.mx_host(),
        listen: SocketAddr::new(ip, s.network.smtp_port),
        submission: None,
        bind: Some(ip),
        spool: home.join("spool"),
        local_domains: vec![sys.domain.clone()],
        relay_domains: Vec::new(),
        relay_clients: Vec::new(),
        mailbox_dir: home.join("mailboxes"),
        tls_identity: Some(TlsIdentity { cert_chain_pem, key_pem }),
        tls: Default::default(),
        inbound_tls: sys.inbound(),
        outbound_tls: sys.outbound(),
        outbound_tls_by_domain: Vec::new(),
        mta_sts: None,
        ca_pem: Some(pki.ca_pem.clone()),
        resolver: dns.resolver_for(ip).expect("resolver"),
        records: Some(home.join("sessions.jsonl")),
        keylog: None,
        limits: Default::default(),
        timeouts: Default::default(),
        delivery: Default::default(),
    }
}

/// A clean path: Postfix asks the daemon, which fetches smtplab's policy; Postfix delivers to
/// beta over TLS verified for mx.beta.example.
#[test]
fn postfix_enforces_the_published_policy_on_a_clean_path() {
    let (log, beta, attacker) = run("clean", 193, 17961, "", "status=sent");
    let sent = log.lines().find(|l| l.contains("status=sent")).expect("sent");
    assert!(sent.contains("relay=mx.beta.example["), "{sent}");
    // Postfix's word for a certificate checked against the CA and matched to the policy's MX.
    assert!(log.contains("Verified TLS connection established to mx.beta.example["), "{log}");
    assert!(attacker.is_empty());
    let inbound: Vec<&SessionRecord> = beta.iter().filter(|r| r.direction == "inbound").collect();
    assert!(inbound.iter().any(|r| r.starttls_used && !r.messages.is_empty()), "{inbound:?}");
}

/// A strip attacker in front of beta's MX: Postfix, holding the policy, defers.
#[test]
fn postfix_defers_under_the_policy_when_starttls_is_stripped() {
    let (log, beta, attacker) = run("strip", 195, 17971, "attack = \"strip\"", "status=deferred");
    let deferred = log.lines().find(|l| l.contains("status=deferred")).expect("deferred");
    assert!(deferred.contains("TLS is required, but was not offered"), "{deferred}");
    assert!(beta.iter().all(|r| r.messages.is_empty()), "nothing reached beta: {beta:?}");
    assert!(!attacker.is_empty());
    for a in &attacker {
        assert!(a.attacked && !a.read_envelope && a.messages.is_empty(), "{a:?}");
    }
}
