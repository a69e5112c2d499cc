//! What each subcommand does: mostly wiring the crates together in the order of the pipeline.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use crate::cli::{Cli, Command, RelayArgs};

pub fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run { scenario, out, run_dir, port_offset } => run(scenario.as_deref(), &out, run_dir, port_offset),
        Command::Sweep { file, out, jobs, plan, status, slurm, partition, max_parallel, time } => {
            if status {
                return crate::sweep::status(&file, &out);
            }
            if slurm {
                let opts = scenarios::sweep::slurm::Options {
                    partition,
                    max_parallel: max_parallel.map(|n| n as usize),
                    time,
                    exe: std::env::current_exe().context("cannot find the smtplab binary")?,
                };
                return crate::sweep::submit(&file, &out, &opts);
            }
            crate::sweep::sweep(&file, &out, jobs.max(1), plan)
        }
        Command::Tap(args) => tap(args),
        Command::Analyze { run_dir, reuse_runs } => {
            crate::results::analyze_with(&run_dir, reuse_runs)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Report { run_dir } => {
            let index = crate::results::report(&run_dir)?;
            println!("report: {}", index.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Relay(args) => relay(args),
        Command::Inject { run_dir } => {
            let n = scenarios::shadow::inject(&run_dir).with_context(|| format!("injecting {}", run_dir.display()))?;
            println!("submitted {n} messages");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

fn run(file: Option<&Path>, out: &Path, run_dir: Option<std::path::PathBuf>, port_offset: u16) -> Result<ExitCode> {
    let (text, source) = match file {
        Some(p) => (
            std::fs::read_to_string(p).with_context(|| format!("cannot read scenario {}", p.display()))?,
            p.display().to_string(),
        ),
        None => (scenarios::DEFAULT_SCENARIO.to_string(), "built-in default (scenarios/default.toml)".to_string()),
    };
    scenarios::progress::start_clock();
    let mut scenario = scenarios::Scenario::parse(&text, &source)?;
    scenario.shift_ports(port_offset).map_err(|why| anyhow::anyhow!("--port-offset {port_offset}: {why}"))?;
    eprintln!("scenario {} (seed {}), from {source}", scenario.scenario.name, scenario.scenario.seed);
    scenarios::interrupt::install();
    let opts = scenarios::RunOptions {
        out_dir: out.to_path_buf(),
        run_dir,
        source,
        command_line: command_line(),
        relay_exe: std::env::current_exe().ok(),
    };
    let outcome = match scenarios::run(&scenario, &opts) {
        Ok(o) => o,
        Err(scenarios::ScenarioError::Capture(tap::TapError::NoCapturePermission { device, source })) => {
            let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "smtplab".into());
            eprintln!(
                "error: no permission to capture on {device} ({source}); nothing was run. Run as root, give \
                 this binary the capability (sudo setcap cap_net_raw,cap_net_admin=eip {exe}), or set \
                 capture = \"recorder\" under [tap] in the scenario to record the lines without privileges"
            );
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    let dir = &outcome.run_dir;
    if let Some(stats) = &outcome.capture {
        eprintln!(
            "captured {} packets ({} dropped by the kernel); {} SMTP sessions, {} transactions in the clear",
            stats.packets_written, stats.dropped, outcome.tap_sessions, outcome.tap_transactions
        );
    }
    if let Some(e) = &outcome.tap_error {
        eprintln!("warning: {e}");
    }
    if scenarios::interrupt::interrupted() {
        eprintln!(
            "interrupted: the capture and the tap's records are kept in {}; no analysis or report was made \
             (run `smtplab analyze` and `smtplab report` on it to see the partial data)",
            dir.display()
        );
        return Ok(ExitCode::from(130));
    }
    // From here on, a failure is recorded in the manifest as the runner does for its own.
    let failed = |e: anyhow::Error| {
        scenarios::runner::mark_failed(dir, &crate::error_text(&e));
        e
    };
    scenarios::progress::say("analysing");
    crate::results::analyze(dir).map_err(failed)?;
    let complete = outcome.stuck.is_empty() || scenario.scenario.allow_undelivered;
    if !outcome.stuck.is_empty() && complete {
        eprintln!(
            "{} messages were still queued at the drain timeout (expected here: allow_undelivered = true)",
            outcome.stuck.len()
        );
    }
    // Hashes of everything the run and the analysis wrote; the report is derived from them.
    scenarios::progress::say("hashing the run's files");
    scenarios::runner::update_manifest(dir, |m| {
        m.status = if complete { records::RunStatus::Complete } else { records::RunStatus::Incomplete };
        m.files = scenarios::provenance::file_hashes(dir);
        // What was run, as the file's bytes: a resumed sweep reruns a point whose file changed.
        m.scenario_sha256 = Some(relay::sha256_hex(text.as_bytes()));
    })
    .map_err(|e| failed(e.into()))?;
    scenarios::progress::say("writing the report");
    let index = crate::results::report(dir).map_err(failed)?;
    if !complete {
        eprintln!("error: {} messages were still queued when the drain timeout passed:", outcome.stuck.len());
        for s in outcome.stuck.iter().take(20) {
            eprintln!("  {s}");
        }
        eprintln!("the report covers what was delivered: {} (INCOMPLETE)", index.display());
        return Ok(ExitCode::FAILURE);
    }
    println!("report: {}", index.display());
    Ok(ExitCode::SUCCESS)
}

fn tap(args: crate::tap_cmd::TapArgs) -> Result<ExitCode> {
    crate::tap_cmd::run(args)
}

fn relay(a: RelayArgs) -> Result<ExitCode> {
    let a = a.merged()?;
    let need = |what: &str| anyhow::anyhow!("smtplab relay needs --{what} (or `{what} = ...` in --config)");
    let listen = a.listen.ok_or_else(|| need("listen"))?;
    let hostname = a.hostname.clone().ok_or_else(|| need("hostname"))?;
    let spool = a.spool.clone().ok_or_else(|| need("spool"))?;
    let read = |p: &Path| std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()));
    let tls_identity = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => Some(relay::TlsIdentity { cert_chain_pem: read(c)?, key_pem: read(k)? }),
        (None, None) => None,
        _ => bail!("--tls-cert and --tls-key go together"),
    };
    if a.dns.is_some() && !a.routes.is_empty() {
        bail!("--dns and --route exclude each other: either DNS finds every MX, or the routes do");
    }
    if a.mx_port.is_some() && a.dns.is_none() {
        bail!("--mx-port is the port at the addresses DNS gives: it needs --dns");
    }
    let mut resolver = relay::StaticResolver::new();
    for r in &a.routes {
        let Some((domain, target)) = r.split_once('=') else {
            bail!("--route {r:?}: use DOMAIN=HOST:PORT, e.g. --route example.org=127.0.0.2:25");
        };
        let (name, target) = match target.split_once('@') {
            Some((name, addr)) => (Some(name), addr),
            None => (None, target),
        };
        let addr = std::net::ToSocketAddrs::to_socket_addrs(target)
            .with_context(|| format!("--route {r:?}: cannot resolve {target}"))?
            .next()
            .with_context(|| format!("--route {r:?}: {target} has no address"))?;
        let host = name.unwrap_or_else(|| target.rsplit_once(':').map(|(h, _)| h).unwrap_or(target)).to_string();
        resolver.add(domain, relay::MxTarget { host, addr, system: None });
    }
    // The DNS client is made inside the runtime whose tasks will carry its queries.
    let rt = tokio::runtime::Runtime::new()?;
    let _in_runtime = rt.enter();
    let cfg = relay::RelayConfig {
        system: a.system.clone().unwrap_or_else(|| hostname.clone()),
        hostname,
        listen,
        submission: a.submission,
        bind: a.bind,
        spool,
        local_domains: a.local_domains,
        // A domain given a route is one the operator chose to pass on: a relay domain.
        relay_domains: a
            .relay_domains
            .iter()
            .cloned()
            .chain(a.routes.iter().filter_map(|r| r.split_once('=').map(|(d, _)| d.to_string())))
            .collect(),
        relay_clients: a
            .relay_clients
            .iter()
            .map(|n| relay::config::parse_client_network(n).map_err(|e| anyhow::anyhow!("--relay-client: {e}")))
            .collect::<Result<_>>()?,
        mailbox_dir: a.mailbox_dir.unwrap_or_else(|| "mailboxes".into()),
        tls_identity,
        tls: relay::TlsSettings {
            versions: a.tls_versions,
            ciphers: a.tls_ciphers,
            groups: a.tls_groups,
            provider: a.tls_provider.unwrap_or_default(),
        },
        inbound_tls: a.inbound_tls.unwrap_or_default(),
        outbound_tls: a.outbound_tls.unwrap_or_default(),
        outbound_tls_by_domain: Vec::new(),
        mta_sts: None,
        ca_pem: a.ca.as_deref().map(read).transpose()?,
        resolver: match a.dns {
            Some(server) => {
                let dns = relay::DnsResolver::new(server, a.bind, a.mx_port.unwrap_or(25))?;
                Arc::new(match &a.trust_anchor {
                    Some(path) => dns.with_trust_anchor_file(path)?,
                    None => dns,
                })
            }
            None => Arc::new(resolver),
        },
        records: a.records,
        keylog: a.keylog,
        limits: Default::default(),
        timeouts: {
            let d = relay::config::Timeouts::default();
            relay::config::Timeouts {
                retry_first: a.retry_first.map(std::time::Duration::from_secs).unwrap_or(d.retry_first),
                retry_max: a.retry_max.map(std::time::Duration::from_secs).unwrap_or(d.retry_max),
                queue_lifetime: a.queue_lifetime.map(std::time::Duration::from_secs).unwrap_or(d.queue_lifetime),
                ..d
            }
        },
        delivery: Default::default(),
    };
    rt.block_on(async {
        let handle = relay::Relay::start(cfg).await?;
        eprintln!("smtplab relay listening on {}", handle.listen);
        if a.exit_on_stdin_eof {
            let mut stdin = tokio::io::stdin();
            let mut sink = Vec::new();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = tokio::io::AsyncReadExt::read_to_end(&mut stdin, &mut sink) => {}
            }
        } else {
            tokio::signal::ctrl_c().await?;
        }
        eprintln!("shutting down; {} messages stay queued for the next start", handle.queued());
        handle.shutdown(std::time::Duration::from_secs(10)).await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
