//! The runner: relays up, tap on, mail in, queues drained, tap off, capture dissected.
//! Analysis and the report are the binary's job (they read the files this writes).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use records::TapRecord;
use relay::{Relay, RelayConfig, RelayHandle, TlsIdentity};

use crate::error::ScenarioError;
use crate::pki::Pki;
use crate::progress::{bar, say};
use crate::schema::Scenario;
use crate::traffic::{self, User};

pub struct RunOptions {
    /// Parent of run directories (`runs/` by default).
    pub out_dir: PathBuf,
    /// Run into exactly this directory instead of a new timestamped one under `out_dir` (sweeps
    /// use it; an unfinished run there is replaced, anything else refused: see [`crate::run_dir`]).
    pub run_dir: Option<PathBuf>,
    /// Where the scenario came from, for the manifest.
    pub source: String,
    pub command_line: String,
    /// The `smtplab` binary, which the netns backend starts as relay processes.
    pub relay_exe: Option<PathBuf>,
}

impl RunOptions {
    /// A new timestamped run directory under `out_dir`, for a scenario that came from `source`;
    /// no netns relay binary (the loopback backend runs the relays in this process).
    pub fn new(out_dir: impl Into<PathBuf>, source: &str) -> Self {
        RunOptions {
            out_dir: out_dir.into(),
            run_dir: None,
            source: source.into(),
            command_line: source.into(),
            relay_exe: None,
        }
    }
}

#[derive(Debug)]
pub struct RunOutcome {
    pub run_dir: PathBuf,
    pub messages: usize,
    pub capture: Option<tap::capture::CaptureStats>,
    pub tap_sessions: usize,
    pub tap_transactions: usize,
    /// Messages still queued when the drain timeout passed: `system: qid <message-id> -> rcpts`.
    pub stuck: Vec<String>,
    /// The capture ended early or was damaged; the records before it were kept.
    pub tap_error: Option<String>,
    /// The paired plaintext control run (`control/`), when the scenario asks for one.
    pub control: Option<Box<RunOutcome>>,
}

/// Runs a scenario end to end, up to and including the tap's records, then its plaintext
/// control if the scenario asks for one.
pub fn run(s: &Scenario, opts: &RunOptions) -> Result<RunOutcome, ScenarioError> {
    let run_dir = match &opts.run_dir {
        Some(dir) => {
            crate::run_dir::prepare(dir)?;
            dir.clone()
        }
        None => new_run_dir(&opts.out_dir, &s.scenario.name)?,
    };
    let mut outcome = run_into(s, &run_dir, opts).inspect_err(|e| mark_failed(&run_dir, &e.to_string()))?;
    if s.scenario.compare_plaintext && !crate::interrupt::interrupted() {
        say("paired control: the same scenario and seed with STARTTLS off everywhere");
        let control_dir = run_dir.join("control");
        std::fs::create_dir_all(&control_dir).map_err(ScenarioError::io(control_dir.display().to_string()))?;
        let control = run_into(&s.plaintext_control(), &control_dir, opts).inspect_err(|e| {
            mark_failed(&control_dir, &e.to_string());
            mark_failed(&run_dir, &format!("the plaintext control failed: {e}"));
        })?;
        outcome.control = Some(Box::new(control));
    }
    Ok(outcome)
}

fn run_into(s: &Scenario, run_dir: &Path, opts: &RunOptions) -> Result<RunOutcome, ScenarioError> {
    let run_dir = run_dir.to_path_buf();
    for d in ["truth", "tap", "systems", "pki"] {
        std::fs::create_dir_all(run_dir.join(d)).map_err(ScenarioError::io(run_dir.join(d).display().to_string()))?;
    }
    let started = now_rfc3339();
    let scenario = serde_json::to_value(s).map_err(ScenarioError::serialize("the scenario for manifest.json"))?;
    write_manifest(
        &run_dir,
        &records::Manifest::running(scenario, &opts.source, s.scenario.seed, &opts.command_line, started),
    )?;

    if let Some(point) = &s.point {
        let text = serde_json::to_string_pretty(point).map_err(ScenarioError::serialize("point.json"))?;
        std::fs::write(run_dir.join("point.json"), text).map_err(ScenarioError::io("point.json"))?;
    }
    std::fs::write(
        run_dir.join("scenario.toml"),
        toml::to_string_pretty(s).map_err(ScenarioError::serialize("the scenario as scenario.toml"))?,
    )
    .map_err(ScenarioError::io("scenario.toml"))?;

    let (messages, stuck, capture_stats) = if s.network.backend == "shadow" {
        let ran = crate::shadow::run(s, &run_dir, opts.relay_exe.as_deref())?;
        (ran.messages, ran.stuck, ran.capture)
    } else {
        run_live(s, &run_dir, opts)?
    };
    merge_system_files(s, &run_dir)?;

    let mut outcome = RunOutcome {
        run_dir: run_dir.clone(),
        messages,
        capture: capture_stats,
        tap_sessions: 0,
        tap_transactions: 0,
        stuck,
        tap_error: None,
        control: None,
    };
    if capture_stats.is_some() {
        say("dissecting the capture");
        // Records stream to the files as sessions end: memory stays flat however large the capture.
        let io = |e: std::io::Error| ScenarioError::Io { what: run_dir.join("tap").display().to_string(), source: e };
        let open = |name: &str| std::fs::File::create(run_dir.join("tap").join(name)).map(std::io::BufWriter::new);
        let (mut sessions, mut transactions) =
            (open("sessions.jsonl").map_err(io)?, open("transactions.jsonl").map_err(io)?);
        let mut write_error = None;
        let mut clear = 0usize;
        let summary = tap::stream_file(&run_dir.join("capture.pcap"), tap::Options::default(), |record, _| {
            use std::io::Write;
            let (out, line) = match &record {
                TapRecord::Session(_) => (&mut sessions, serde_json::to_string(&record)),
                TapRecord::Transaction(t) => {
                    clear += usize::from(!t.tls);
                    (&mut transactions, serde_json::to_string(&record))
                }
            };
            match line.map_err(std::io::Error::from).and_then(|l| writeln!(out, "{l}")) {
                Ok(()) => std::ops::ControlFlow::Continue(()),
                Err(e) => {
                    write_error = Some(e);
                    std::ops::ControlFlow::Break(())
                }
            }
        })?;
        if let Some(e) = write_error {
            return Err(io(e));
        }
        std::io::Write::flush(&mut sessions).map_err(io)?;
        std::io::Write::flush(&mut transactions).map_err(io)?;
        outcome.tap_sessions = summary.sessions as usize;
        outcome.tap_transactions = clear;
        outcome.tap_error = summary.error.as_ref().map(|e| e.to_string());
        if let Some(dns) = s.dns_server() {
            crate::dns::write_sightings(&run_dir, dns)?;
        }
    } else {
        write_tap_records(&run_dir, Vec::new(), Vec::new())?;
    }
    let interrupted = crate::interrupt::interrupted();
    update_manifest(&run_dir, |m| {
        m.status = if interrupted {
            records::RunStatus::Interrupted
        } else if outcome.stuck.is_empty() || s.scenario.allow_undelivered {
            records::RunStatus::Captured
        } else {
            records::RunStatus::Incomplete
        };
        m.ended = Some(now_rfc3339());
        m.capture_stats = outcome.capture;
        m.stuck = outcome.stuck.clone();
    })?;
    Ok(outcome)
}

/// The loopback and netns backends: network, live tap (or recorder), relays and traffic in real
/// time; returns the messages submitted, what stayed queued and the capture's statistics.
fn run_live(
    s: &Scenario,
    run_dir: &Path,
    opts: &RunOptions,
) -> Result<(usize, Vec<String>, Option<tap::capture::CaptureStats>), ScenarioError> {
    let run_dir = run_dir.to_path_buf();
    // The netns backend's network first: the tap captures on its bridge.
    let mut network = if s.network.backend == "netns" {
        say(&format!("building {} network namespaces", s.systems.len()));
        Some(crate::netns::Network::create(s.systems.len(), s.network.delay_ms, s.network.loss_percent)?)
    } else {
        None
    };
    let device = network.as_ref().map(|n| n.bridge.clone()).unwrap_or_else(|| s.tap.device.clone());
    // The tap next: if capture is not permitted, fail before anything else happens.
    let capture = if s.tap.capture == "live" {
        let filter = capture_filter(s);
        let mut links: Option<std::collections::HashSet<(IpAddr, IpAddr)>> = s.tapped_links().map(|pairs| {
            pairs.iter().map(|&(a, b)| tap::capture::link(IpAddr::V4(s.address(a)), IpAddr::V4(s.address(b)))).collect()
        });
        // Access taps place the tap on chosen users' lines: the system pairs (all of them, when
        // no placement says otherwise) and each tapped user's line to its own system.
        let access = s.access_taps();
        if !access.is_empty() {
            let n = s.systems.len();
            let all = || {
                (0..n)
                    .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
                    .map(|(a, b)| tap::capture::link(IpAddr::V4(s.address(a)), IpAddr::V4(s.address(b))))
                    .collect()
            };
            let set = links.get_or_insert_with(all);
            let users = traffic::users(s);
            for (user, &(addr, tapped)) in users.iter().zip(&access) {
                if tapped {
                    set.insert(tap::capture::link(IpAddr::V4(addr), IpAddr::V4(s.address(user.system))));
                }
            }
        }
        // `access_lines`: the injector's submissions are the users' lines; a placement keeps them.
        if s.tap.access_lines
            && let Some(set) = links.as_mut()
        {
            let injector = IpAddr::V4(injector_addr(s));
            set.extend((0..s.systems.len()).map(|i| tap::capture::link(injector, IpAddr::V4(s.address(i)))));
        }
        let promisc = network.is_some();
        let opts = tap::LiveOptions { device, filter, links, promisc, ..Default::default() };
        match tap::LiveCapture::start(&opts, &run_dir.join("capture.pcap")) {
            Ok(c) => Some(c),
            Err(e) => {
                // Nothing happened yet: leave no half-made run directory behind.
                let _ = std::fs::remove_dir_all(&run_dir);
                return Err(e.into());
            }
        }
    } else {
        None
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ScenarioError::io("tokio runtime"))?;
    let users = Arc::new(traffic::users(s));
    // The traffic is generated while it is submitted; a generator that cannot start fails here,
    // before any relay does.
    traffic::Generator::new(s, &users)?;
    let mut recorded = None;
    let driven = runtime.block_on(drive(s, &run_dir, users, &mut network, opts.relay_exe.as_deref(), &mut recorded));
    // Stop the capture whatever happened: what was captured is kept.
    let capture_stats = match capture {
        Some(c) => {
            std::thread::sleep(Duration::from_millis(200));
            Some(c.stop()?)
        }
        None => recorded,
    };
    // Namespaces go only after the capture on their bridge has stopped.
    drop(network);
    let (messages, submissions, stuck) = driven?;
    records::write_jsonl(&run_dir.join("truth/submissions.jsonl"), &submissions)?;
    Ok((messages, stuck, capture_stats))
}

/// Writes the tap's records as `tap/sessions.jsonl` and `tap/transactions.jsonl`.
pub fn write_tap_records(
    run_dir: &Path,
    sessions: Vec<records::TapSession>,
    transactions: Vec<records::TapTransaction>,
) -> Result<(), ScenarioError> {
    let s: Vec<TapRecord> = sessions.into_iter().map(TapRecord::Session).collect();
    let t: Vec<TapRecord> = transactions.into_iter().map(TapRecord::Transaction).collect();
    records::write_jsonl(&run_dir.join("tap/sessions.jsonl"), &s)?;
    Ok(records::write_jsonl(&run_dir.join("tap/transactions.jsonl"), &t)?)
}

async fn drive(
    s: &Scenario,
    run_dir: &Path,
    users: Arc<Vec<User>>,
    network: &mut Option<crate::netns::Network>,
    relay_exe: Option<&Path>,
    recorded: &mut Option<tap::capture::CaptureStats>,
) -> Result<(usize, Vec<records::Submission>, Vec<String>), ScenarioError> {
    let pki = Pki::new(&s.scenario.name)?;
    pki.write_ca(&run_dir.join("pki"))?;
    // With the link recorder, every system's MX is a proxy in front of its relay.
    let recording = s.tap.capture == "recorder";
    let mx_port = if recording { s.network.smtp_port + 2 } else { s.network.smtp_port };
    // Certificates before DNS: a system's TLSA record is made from its certificate.
    let identities = s
        .systems
        .iter()
        .map(|sys| {
            sys.starttls
                .then(|| {
                    pki.issue(&sys.mx_host()).map(|(cert_chain_pem, key_pem)| TlsIdentity { cert_chain_pem, key_pem })
                })
                .transpose()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let security = s
        .systems
        .iter()
        .zip(&identities)
        .map(|(sys, id)| {
            let tlsa = match id {
                Some(id) => crate::dane::tlsa_for(sys.dane, &id.cert_chain_pem)?,
                None => None,
            };
            Ok(crate::dns::ZoneSecurity { domain: sys.domain.clone(), dnssec: sys.dnssec, tlsa })
        })
        .collect::<Result<Vec<_>, ScenarioError>>()?;
    let dns = crate::dns::Dns::start(s, mx_port, &security).await?;
    if let Some(anchor) = dns.anchor_record() {
        // For anyone validating the run's DNS afterwards (unbound's trust-anchor-file, dig).
        let path = run_dir.join("pki/dnssec-root.key");
        std::fs::write(&path, anchor).map_err(ScenarioError::io(path.display().to_string()))?;
    }
    // The MTA-STS policy servers next: a sender's first delivery may fetch a policy at once.
    let policy_servers = crate::mta_sts::PolicyServers::start(s, &pki).await?;
    let recorder = if recording {
        let proxies = (0..s.systems.len())
            .map(|i| crate::recorder::Proxy {
                listen: SocketAddr::new(IpAddr::V4(s.address(i)), mx_port),
                target: SocketAddr::new(IpAddr::V4(s.address(i)), s.network.smtp_port),
            })
            .collect();
        let tapped = s.tapped_links().map(|pairs| {
            pairs.iter().map(|&(a, b)| tap::capture::link(IpAddr::V4(s.address(a)), IpAddr::V4(s.address(b)))).collect()
        });
        Some(crate::recorder::Recorder::start(&run_dir.join("capture.pcap"), proxies, tapped).await?)
    } else {
        None
    };
    // Attackers before the relays: the first delivery to an intercepted domain already meets one.
    let traffic_start: crate::attack::TrafficStart = Default::default();
    let attackers = crate::attack::Attackers::start(s, &pki, mx_port, run_dir, traffic_start.clone()).await?;
    let mut relays = Relays::InProcess(Vec::new());
    for (i, sys) in s.systems.iter().enumerate() {
        let dir = run_dir.join("systems").join(&sys.name);
        let ip = IpAddr::V4(s.address(i));
        let tls_identity = identities[i].clone();
        if let Some(net) = network.as_mut() {
            let exe = relay_exe.ok_or(ScenarioError::NoRelayExecutable { backend: "netns" })?;
            std::fs::create_dir_all(&dir).map_err(ScenarioError::io(dir.display().to_string()))?;
            let mut args =
                crate::relay_args::process_args(s, i, &dir, &run_dir.join("pki/ca.pem"), tls_identity.as_ref())?;
            if dns.anchor_record().is_some() {
                args.extend(["--trust-anchor".into(), run_dir.join("pki/dnssec-root.key").display().to_string()]);
            }
            net.start_relay(i, exe, &args, &dir.join("relay.log"), SocketAddr::new(ip, s.network.submission_port))?;
            if let Relays::InProcess(v) = &relays
                && v.is_empty()
            {
                relays = Relays::Processes(Vec::new());
            }
            if let Relays::Processes(spools) = &mut relays {
                spools.push(dir.join("spool"));
            }
            continue;
        }
        let cfg = RelayConfig {
            system: sys.name.clone(),
            hostname: sys.mx_host(),
            listen: SocketAddr::new(ip, s.network.smtp_port),
            submission: Some(SocketAddr::new(ip, s.network.submission_port)),
            bind: Some(ip),
            spool: dir.join("spool"),
            local_domains: vec![sys.domain.clone()],
            relay_domains: Vec::new(),
            // The injector submits from 127.0.0.1 (and the link recorder's proxies connect from
            // there): it stands for the system's users, who may send anywhere. Other systems may
            // only send mail for this system's own domain.
            // With access taps each user submits from an address of its own: those too.
            relay_clients: std::iter::once(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
                .chain(s.access_taps().into_iter().map(|(a, _)| IpAddr::V4(a)))
                .map(relay::config::IpNet::from)
                .collect(),
            mailbox_dir: dir.join("mailboxes"),
            tls_identity,
            tls: sys.tls.clone(),
            inbound_tls: sys.inbound(),
            outbound_tls: sys.outbound(),
            outbound_tls_by_domain: Vec::new(),
            mta_sts: if sys.mta_sts { crate::mta_sts::relay_config(s, &pki.ca_pem) } else { None },
            ca_pem: Some(pki.ca_pem.clone()),
            resolver: dns.resolver_for(ip)?,
            records: Some(dir.join("sessions.jsonl")),
            keylog: Some(dir.join("keys.log")),
            limits: Default::default(),
            timeouts: relay::config::Timeouts {
                greeting: Duration::from_secs(30),
                command: Duration::from_secs(30),
                data_block: Duration::from_secs(30),
                data_end: Duration::from_secs(60),
                server_idle: Duration::from_secs(30),
                retry_first: Duration::from_secs(1),
                retry_max: Duration::from_secs(10),
                ..Default::default()
            },
            delivery: relay::DeliveryOptions { seed: system_seed(s.scenario.seed, i), ..sys.delivery.clone() },
        };
        match Relay::start(cfg).await {
            Ok(h) => {
                if let Relays::InProcess(v) = &mut relays {
                    v.push(h);
                }
            }
            Err(e) => {
                relays.stop().await;
                return Err(e.into());
            }
        }
    }
    let t = &s.traffic;
    say(&match t.duration {
        Some(d) => format!(
            "{} relays up; submitting Poisson arrivals at {}/s for {d} s (about {:.0} messages)",
            s.systems.len(),
            t.rate,
            t.rate * d
        ),
        None => format!("{} relays up; submitting {} messages", s.systems.len(), t.message_count()),
    });
    let _ = traffic_start.set(std::time::Instant::now());
    // Generated, submitted and written to the truth as it goes: never all in memory at once.
    // REQUIRETLS is asked for inside TLS only: then the injector's sessions use STARTTLS,
    // verified against the scenario CA as a mail client would.
    let submission_tls = if s.traffic.requiretls_share > 0.0 {
        let config = relay::tls::client_config_verify(&pki.ca_pem, &Default::default(), None)?;
        Some(crate::inject::SubmissionTls { config, server_name: String::new() })
    } else {
        None
    };
    // Cover traffic runs while the real traffic does: started with it, stopped when the last
    // message is submitted, so the drain that follows is bounded.
    relays.start_cover(s)?;
    let sources = s.access_taps();
    let sources = (!sources.is_empty()).then(|| Arc::new(sources.into_iter().map(|(a, _)| IpAddr::V4(a)).collect()));
    let submitted =
        crate::submission::submit_all_from(s, users, &run_dir.join("truth/messages.jsonl"), submission_tls, sources)
            .await;
    relays.stop_cover();
    let (submitted_at, first_error) = (submitted.times, submitted.error);
    let total = submitted_at.len();

    // An interrupt ends the submission early: say so rather than claim every message went in.
    if crate::interrupt::interrupted() {
        say(&format!("interrupted after {total} messages submitted; stopping the relays with what they hold"));
    } else if first_error.is_some() {
        say(&format!(
            "submission stopped after {total} messages (an error, reported below); waiting for the queues to drain"
        ));
    } else {
        say("all messages submitted; waiting for the queues to drain");
    }
    let drain = bar(total as u64, "delivering");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(s.scenario.drain_timeout);
    loop {
        let queued = relays.queued();
        drain.set_position(total.saturating_sub(queued) as u64);
        if queued == 0 || tokio::time::Instant::now() >= deadline || crate::interrupt::interrupted() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drain.finish_and_clear();
    let left = relays.queued();
    say(&if left == 0 {
        "queues drained; stopping relays".to_string()
    } else {
        format!("{left} messages still queued; stopping relays")
    });
    if let Some(r) = recorder {
        let packets = r.stop();
        *recorded = Some(tap::capture::CaptureStats { packets_written: packets, ..Default::default() });
    }
    if let Some(net) = network.as_mut() {
        net.stop_relays(Duration::from_secs(10));
    }
    let stuck = relays.stop().await;
    // After the relays: their last sessions through an attacker have ended, and are recorded.
    attackers.stop(Duration::from_secs(5)).await;
    policy_servers.stop().await;
    dns.stop().await;
    let stuck: Vec<String> = stuck
        .into_iter()
        .map(|(i, env)| {
            format!("{}: {} <{}> -> {}", s.systems[i].name, env.qid, env.message_id, env.pending.join(", "))
        })
        .collect();
    if let Some(e) = first_error {
        return Err(e);
    }

    // Wall-clock submission times: timing, kept apart from the deterministic truth.
    let submissions =
        submitted_at.iter().map(|(&seq, &submitted_at)| records::Submission { seq, submitted_at }).collect();
    Ok((total, submissions, stuck))
}

/// Copies the TLS-RPT reports a relay wrote at shutdown (`systems/<name>/tlsrpt/*.json`) to
/// the run's `tlsrpt/<name>/`, where analysis finds each sender's reports.
fn gather_tls_reports(from: &Path, to: &Path) -> Result<(), ScenarioError> {
    let Ok(entries) = std::fs::read_dir(from) else { return Ok(()) };
    std::fs::create_dir_all(to).map_err(ScenarioError::io(to.display().to_string()))?;
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "json") {
            std::fs::copy(&path, to.join(e.file_name())).map_err(ScenarioError::io(path.display().to_string()))?;
        }
    }
    Ok(())
}

/// Concatenates each system's session records and key log into the run's truth files.
fn merge_system_files(s: &Scenario, run_dir: &Path) -> Result<(), ScenarioError> {
    // Copied file by file: the key log of a large run is hundreds of MB.
    let keys_io = |source| ScenarioError::Io { what: run_dir.join("keys.log").display().to_string(), source };
    // Every session's TLS secrets: owner-only, as the relays write theirs.
    let mut keys = std::io::BufWriter::new(relay::files::create_private(&run_dir.join("keys.log")).map_err(&keys_io)?);
    let mut systems = Vec::new();
    let mut session_files = Vec::new();
    for (i, sys) in s.systems.iter().enumerate() {
        let dir = run_dir.join("systems").join(&sys.name);
        let path = dir.join("sessions.jsonl");
        if path.exists() {
            session_files.push(path);
        }
        if let Ok(mut k) = std::fs::File::open(dir.join("keys.log")) {
            std::io::copy(&mut k, &mut keys).map_err(&keys_io)?;
        }
        gather_tls_reports(&dir.join("tlsrpt"), &run_dir.join("tlsrpt").join(&sys.name))?;
        systems.push(records::SystemInfo {
            name: sys.name.clone(),
            domain: sys.domain.clone(),
            mx: Some(sys.mx_host()),
            address: s.address(i).to_string(),
            starttls: sys.starttls,
            inbound_tls: serde_name(&sys.inbound()),
            outbound_tls: serde_name(&sys.outbound()),
            mta_sts: sys.mta_sts,
            mta_sts_policy: sys.mta_sts_policy.as_ref().map(|p| p.mode.name().to_string()),
            delivery: serde_json::to_value(&sys.delivery).ok(),
        });
    }
    // Relay processes (netns) do not know the names of the systems they talk to: the runner does.
    let mut by_ip: std::collections::HashMap<String, String> =
        (0..s.systems.len()).map(|i| (s.address(i).to_string(), s.systems[i].name.clone())).collect();
    // A hop to an attacker's address was meant for the system whose MX it stands in for.
    for (domain, _, addr) in s.interceptions() {
        if let Some(sys) = s.systems.iter().find(|sys| sys.domain.eq_ignore_ascii_case(&domain)) {
            by_ip.insert(addr.to_string(), sys.name.clone());
        }
    }
    crate::session_merge::merge_sorted(&session_files, &run_dir.join("truth/sessions.jsonl"), |r| {
        if r.peer_system.is_none() && r.direction == "outbound" {
            r.peer_system = by_ip.get(r.peer_addr.rsplit_once(':').map(|(h, _)| h).unwrap_or("")).cloned();
        }
    })?;
    std::io::Write::flush(&mut keys).map_err(&keys_io)?;
    crate::attack::merge_truth(s, run_dir)?;
    // Where the tap sat: every unordered system pair, and whether its line was tapped.
    let tapped: Option<std::collections::HashSet<(usize, usize)>> = s.tapped_links().map(|v| v.into_iter().collect());
    let n = s.systems.len();
    let links: Vec<records::TapLink> = (0..n)
        .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
        .map(|(a, b)| {
            let on = tapped.as_ref().is_none_or(|t| t.contains(&(a, b)));
            // Live capture and the recorder both capture a tapped line.
            records::TapLink {
                a: s.systems[a].name.clone(),
                b: s.systems[b].name.clone(),
                tapped: on && s.tap.capture != "none",
            }
        })
        .collect();
    records::write_json_file(&run_dir.join("truth/tap_links.json"), &links)
        .map_err(ScenarioError::io("truth/tap_links.json"))?;
    let access = s.access_taps();
    if !access.is_empty() {
        let users = traffic::users(s);
        let taps: Vec<records::AccessTap> = users
            .iter()
            .zip(&access)
            .map(|(u, &(addr, tapped))| records::AccessTap {
                user: u.address.clone(),
                system: s.systems[u.system].name.clone(),
                address: addr.to_string(),
                tapped: tapped && s.tap.capture != "none",
            })
            .collect();
        records::write_json_file(&run_dir.join("truth/access_taps.json"), &taps)
            .map_err(ScenarioError::io("truth/access_taps.json"))?;
    }
    records::write_json_file(&run_dir.join("truth/systems.json"), &systems)
        .map_err(ScenarioError::io("truth/systems.json"))
}

fn new_run_dir(parent: &Path, name: &str) -> Result<PathBuf, ScenarioError> {
    let stamp = time::OffsetDateTime::now_utc()
        .format(&time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"))
        .unwrap_or_else(|_| "now".into());
    std::fs::create_dir_all(parent).map_err(ScenarioError::io(parent.display().to_string()))?;
    for n in 1.. {
        let dir =
            if n == 1 { parent.join(format!("{name}-{stamp}")) } else { parent.join(format!("{name}-{stamp}-{n}")) };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(ScenarioError::io(dir.display().to_string())(e)),
        }
    }
    unreachable!("the loop above returns")
}

/// A policy as the scenario file spells it (its serde name): the same word in systems.json.
fn serde_name(value: &impl serde::Serialize) -> Option<String> {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string))
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

pub fn write_manifest(run_dir: &Path, m: &records::Manifest) -> Result<(), ScenarioError> {
    records::write_json_file(&run_dir.join("manifest.json"), m).map_err(ScenarioError::io("manifest.json"))
}

/// Records in the manifest that the run failed and why, so neither a user nor a resumed sweep
/// takes it for one still running. Best effort: a run that left no manifest has nothing to mark.
pub fn mark_failed(run_dir: &Path, error: &str) {
    if run_dir.join("manifest.json").exists() {
        let _ = update_manifest(run_dir, |m| {
            m.status = records::RunStatus::Failed;
            m.error = Some(error.to_string());
            m.ended = Some(now_rfc3339());
        });
    }
}

/// Reads, changes and rewrites `manifest.json`.
pub fn update_manifest(run_dir: &Path, f: impl FnOnce(&mut records::Manifest)) -> Result<(), ScenarioError> {
    let path = run_dir.join("manifest.json");
    let mut m: records::Manifest = records::read_json_file(&path, "a run manifest")?;
    f(&mut m);
    write_manifest(run_dir, &m)
}

/// The relays of a run: tasks in this process (loopback) or processes in namespaces (netns).
enum Relays {
    InProcess(Vec<RelayHandle>),
    /// The spool of each relay process, read from disk.
    Processes(Vec<PathBuf>),
}

impl Relays {
    /// Starts the cover traffic of every system with `cover_rate > 0`, towards every other
    /// system's domain, sized as the scenario says (`traffic`: the traffic's own log-normal).
    fn start_cover(&mut self, s: &Scenario) -> Result<(), ScenarioError> {
        let Relays::InProcess(handles) = self else { return Ok(()) };
        for (i, h) in handles.iter_mut().enumerate() {
            let d = &s.systems[i].delivery;
            if d.cover_rate <= 0.0 {
                continue;
            }
            let sizes = match d.cover_size {
                relay::CoverSize::Fixed(n) => relay::cover::CoverSizes::Fixed(n),
                relay::CoverSize::Traffic => {
                    relay::cover::CoverSizes::LogNormal { median: s.traffic.size_median, sigma: s.traffic.size_sigma }
                }
            };
            let destinations = s.systems.iter().filter(|o| o.name != s.systems[i].name).map(|o| o.domain.clone());
            let cfg = relay::cover::CoverConfig {
                rate: d.cover_rate,
                sizes,
                destinations: destinations.collect(),
                seed: system_seed(s.scenario.seed, i) ^ 0x0063_6f76_6572,
            };
            h.start_cover(cfg).map_err(|source| ScenarioError::Cover { system: s.systems[i].name.clone(), source })?;
        }
        Ok(())
    }

    fn stop_cover(&self) {
        if let Relays::InProcess(handles) = self {
            handles.iter().for_each(RelayHandle::stop_cover);
        }
    }

    fn queued(&self) -> usize {
        match self {
            Relays::InProcess(v) => v.iter().map(RelayHandle::queued).sum(),
            Relays::Processes(spools) => spools.iter().map(|p| crate::netns::queued(p)).sum(),
        }
    }

    /// Stops in-process relays (processes are stopped by their network) and lists what is still
    /// queued, by system index.
    async fn stop(self) -> Vec<(usize, relay::spool::Envelope)> {
        match self {
            Relays::InProcess(v) => {
                let mut stuck = Vec::new();
                for (i, r) in v.into_iter().enumerate() {
                    stuck.extend(r.stuck().into_iter().map(|e| (i, e)));
                    r.shutdown(Duration::from_secs(5)).await;
                }
                stuck
            }
            Relays::Processes(spools) => spools
                .iter()
                .enumerate()
                .flat_map(|(i, p)| {
                    relay::spool::Spool::open(p)
                        .and_then(|s| s.list())
                        .unwrap_or_default()
                        .into_iter()
                        .map(move |e| (i, e))
                })
                .collect(),
        }
    }
}

/// The seed of system `i`'s own draws (its pool-mix rounds, its cover traffic): the scenario's
/// seed and the system's place, so systems draw apart and the same scenario draws the same.
fn system_seed(seed: u64, i: usize) -> u64 {
    seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The BPF filter of the live tap: the scenario's SMTP port (and the submission port for access
/// lines), between the scenario's own addresses only, so other traffic on the same interface
/// and port (another run, a test) never enters the capture.
fn capture_filter(s: &Scenario) -> String {
    let ports = if s.tap.access_lines || s.tap.access_share > 0.0 {
        format!("(tcp port {} or tcp port {})", s.network.smtp_port, s.network.submission_port)
    } else {
        format!("tcp port {}", s.network.smtp_port)
    };
    // Beyond a few hundred hosts the BPF program grows past the kernel's limit; the link filter
    // in the capture thread still restricts what is written when a placement is given.
    if s.systems.len() > 300 {
        return with_dns(s, ports);
    }
    // The attackers' addresses too: both legs of an intercepted session cross the tap.
    let hosts: Vec<String> = (0..s.systems.len())
        .map(|i| s.address(i).to_string())
        .chain(s.interceptions().into_iter().map(|(_, _, a)| a.to_string()))
        .chain(s.access_taps().into_iter().filter(|t| t.1).map(|(a, _)| a.to_string()))
        // `access_lines`: the injector submits every user's mail, so its address is the
        // users' end of the access lines.
        .chain(s.tap.access_lines.then(|| injector_addr(s).to_string()))
        .collect();
    if hosts.len() > 300 {
        return with_dns(s, ports);
    }
    let src = hosts.iter().map(|h| format!("src host {h}")).collect::<Vec<_>>().join(" or ");
    let dst = hosts.iter().map(|h| format!("dst host {h}")).collect::<Vec<_>>().join(" or ");
    with_dns(s, format!("{ports} and ({src}) and ({dst})"))
}

/// Where the injector submits from: loopback's 127.0.0.1, or the netns bridge's address.
fn injector_addr(s: &Scenario) -> std::net::Ipv4Addr {
    if s.network.backend == "netns" { crate::netns::ROOT_ADDR } else { std::net::Ipv4Addr::LOCALHOST }
}

/// The DNS server's traffic joins the capture: the MX queries an eavesdropper sees.
fn with_dns(s: &Scenario, filter: String) -> String {
    match s.dns_server() {
        Some(dns) => format!("({filter}) or (port {} and host {})", dns.port(), dns.ip()),
        None => filter,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A damaged manifest is named as such, with serde's reason, and is left as it was.
    #[test]
    fn a_damaged_manifest_is_named_and_kept() {
        let dir = std::env::temp_dir().join(format!("smtplab-runner-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("manifest.json");
        std::fs::write(&path, "{\"status\": \"running\",").expect("write");
        let e = update_manifest(&dir, |m| m.status = records::RunStatus::Complete).expect_err("damaged");
        let kept = std::fs::read_to_string(&path).expect("read");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(kept, "{\"status\": \"running\",");
        match e {
            ScenarioError::RunFile(records::RunFileError::Json { path: named, what, .. }) => {
                assert_eq!((named, what), (path.display().to_string(), "a run manifest"));
            }
            e => panic!("expected a RunFile error, got {e}"),
        }
    }
}
