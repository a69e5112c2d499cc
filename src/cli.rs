//! The command-line interface.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "smtplab",
    version,
    about = "Measure what a passive eavesdropper learns from SMTP, with and without STARTTLS"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run a scenario: real relays, real traffic, a live tap; then analysis and the report.
    Run {
        /// Scenario file (TOML); without it, the built-in default (scenarios/default.toml).
        scenario: Option<PathBuf>,
        /// Parent directory of run directories.
        #[arg(long, default_value = "runs")]
        out: PathBuf,
        /// Run into exactly this directory: a new or empty one, or an unfinished run there, which is
        /// replaced. A complete run or anything else in it is refused, never deleted.
        #[arg(long)]
        run_dir: Option<PathBuf>,
        /// Move the scenario's SMTP, submission and DNS ports up by N, so that several runs share
        /// one host (Slurm tasks on one node do); the ports change no result.
        #[arg(long, default_value_t = 0)]
        port_offset: u16,
    },
    /// Run every point × seed of a scenario file's [sweep] grid, each into its own run directory;
    /// finished points are skipped, so an interrupted sweep resumes.
    Sweep {
        /// The sweep file; with --status, the sweep file or its sweep directory.
        file: PathBuf,
        /// Parent directory of sweep directories.
        #[arg(long, default_value = "sweeps")]
        out: PathBuf,
        /// Points run at once (each its own process, on its own ports).
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Write the point files and sweep.json (each point's command) and run nothing: for a
        /// cluster scheduler (see SCENARIOS.md).
        #[arg(long)]
        plan: bool,
        /// Say which points are complete, which failed or never ran (with their logs), and exit
        /// with failure unless all are complete. Runs nothing.
        #[arg(long, conflicts_with_all = ["plan", "slurm"])]
        status: bool,
        /// Submit the points to Slurm as one array job (one task per pending point × seed) and an
        /// analysis job after it, instead of running them here. The sweep directory (--out) and
        /// this binary must be on a file system every node mounts at the same path.
        #[arg(long, conflicts_with_all = ["plan", "jobs"])]
        slurm: bool,
        /// Slurm partition of the jobs (`sinfo -s` lists them); default: the cluster's.
        #[arg(long, requires = "slurm")]
        partition: Option<String>,
        /// At most N array tasks at once (sbatch --array ...%N); default: as many as Slurm gives.
        #[arg(long, requires = "slurm", value_parser = clap::value_parser!(u32).range(1..))]
        max_parallel: Option<u32>,
        /// Time limit of each task (HH:MM:SS, MM:SS, minutes or D-HH:MM:SS); default: the
        /// partition's.
        #[arg(long, requires = "slurm")]
        time: Option<String>,
    },
    /// Dissect a capture (pcap or pcapng), or capture live, as the eavesdropper: SMTP in the
    /// clear, TLS metadata, and the system-to-system volume.
    Tap(crate::tap_cmd::TapArgs),
    /// Analyse a run directory: join ground truth with the tap's records.
    Analyze {
        run_dir: PathBuf,
        /// With a sweep directory: keep the analysis each complete run already has (`smtplab
        /// run` made it) and analyse only the other runs, then the sweep.
        #[arg(long)]
        reuse_runs: bool,
    },
    /// Rebuild a run directory's report from its saved files.
    Report { run_dir: PathBuf },
    /// Run one relay on its own, to sit between real MTAs in any testbed.
    Relay(RelayArgs),
    /// The traffic generator of a run under Shadow (network.backend = "shadow"): submits the
    /// traffic of RUN_DIR/scenario.toml and writes its truth. Shadow starts it; not for people.
    #[command(hide = true)]
    Inject { run_dir: PathBuf },
}

/// `smtplab relay` flags. Every flag can also come from `--config FILE` (TOML, same names with
/// `_` for `-`, `route`, `local_domain`, `relay_domain` and `relay_client` as arrays); a flag given
/// on the command line wins.
#[derive(clap::Args, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayArgs {
    /// TOML file with any of the settings below.
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address of the SMTP listener.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Name in the greeting, EHLO and Received headers.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Name of the mail system in session records (default: the hostname).
    #[arg(long)]
    pub system: Option<String>,
    /// Spool directory (the durable queue).
    #[arg(long)]
    pub spool: Option<PathBuf>,
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// TLS versions allowed, comma separated: 1.2,1.3 (default both).
    #[arg(long, value_delimiter = ',')]
    pub tls_versions: Vec<String>,
    /// Cipher suites allowed (IANA names), comma separated; default: rustls' safe defaults.
    #[arg(long, value_delimiter = ',')]
    pub tls_ciphers: Vec<String>,
    /// Key-exchange groups allowed (X25519, secp256r1, secp384r1, and the post-quantum hybrid
    /// X25519MLKEM768), comma separated; default: the provider's defaults.
    #[arg(long, value_delimiter = ',')]
    pub tls_groups: Vec<String>,
    /// The crypto library under rustls: aws-lc-rs (default) or ring.
    #[arg(long)]
    pub tls_provider: Option<relay::CryptoBackend>,
    /// none, may (default) or encrypt.
    #[arg(long)]
    pub inbound_tls: Option<relay::InboundTls>,
    /// none, may (default), encrypt, verify, dane or dane-only (DANE needs --dns and
    /// --trust-anchor; without an anchor no TLSA answer is secure and dane is may).
    #[arg(long)]
    pub outbound_tls: Option<relay::OutboundTls>,
    /// CA certificates (PEM) for `--outbound-tls verify`.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Where mail for a domain goes: DOMAIN=HOST:PORT (resolved once, now), or
    /// DOMAIN=MXNAME@ADDR:PORT to give the MX name (SNI, `verify`) and its address apart.
    #[arg(long = "route")]
    #[serde(rename = "route")]
    pub routes: Vec<String>,
    /// Resolve MX and A records through this DNS server (ADDR:PORT) and no other (never the
    /// system's resolver, never /etc/hosts), instead of --route.
    #[arg(long, conflicts_with = "routes")]
    pub dns: Option<SocketAddr>,
    /// With --dns: the SMTP port to connect to at the addresses DNS gives (default 25).
    #[arg(long, requires = "dns")]
    pub mx_port: Option<u16>,
    /// With --dns: a DNSKEY trust anchor file (a run's pki/dnssec-root.key; unbound's
    /// trust-anchor-file format) against which TLSA lookups are validated (DANE).
    #[arg(long, requires = "dns")]
    pub trust_anchor: Option<PathBuf>,
    /// Domains delivered into --mailbox-dir.
    #[arg(long = "local-domain")]
    #[serde(rename = "local_domain")]
    pub local_domains: Vec<String>,
    /// Where local mail goes (default: mailboxes).
    #[arg(long)]
    pub mailbox_dir: Option<PathBuf>,
    /// Other domains accepted from any client and passed on (Postfix's relay_domains).
    #[arg(long = "relay-domain")]
    #[serde(rename = "relay_domain")]
    pub relay_domains: Vec<String>,
    /// Clients that may relay to any domain: a network (10.0.0.0/8) or an address (Postfix's
    /// mynetworks). Default: none; everyone else may send only to local and relay domains.
    #[arg(long = "relay-client")]
    #[serde(rename = "relay_client")]
    pub relay_clients: Vec<String>,
    /// Seconds a message may wait in the queue before it is bounced (Postfix's
    /// maximal_queue_lifetime; default 5 days).
    #[arg(long)]
    pub queue_lifetime: Option<u64>,
    /// Source address for outgoing connections.
    #[arg(long)]
    pub bind: Option<IpAddr>,
    /// A second listener where users submit mail (kept apart from system-to-system SMTP).
    #[arg(long)]
    pub submission: Option<SocketAddr>,
    /// Shut down gracefully when standard input closes: a supervisor that dies takes its relays
    /// with it (scenario runners use this).
    #[arg(long)]
    #[serde(skip)]
    pub exit_on_stdin_eof: bool,
    /// First retry delay after a temporary failure, seconds (doubles up to --retry-max).
    #[arg(long)]
    pub retry_first: Option<u64>,
    /// Longest retry delay, seconds.
    #[arg(long)]
    pub retry_max: Option<u64>,
    /// Session records, one JSON line each.
    #[arg(long)]
    pub records: Option<PathBuf>,
    /// NSS key log for Wireshark.
    #[arg(long)]
    pub keylog: Option<PathBuf>,
}

impl RelayArgs {
    /// Fills what the command line left out from the config file, if any.
    pub fn merged(self) -> anyhow::Result<RelayArgs> {
        use anyhow::Context;
        let Some(path) = self.config.clone() else { return Ok(self) };
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let file: RelayArgs = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(RelayArgs {
            config: self.config,
            listen: self.listen.or(file.listen),
            hostname: self.hostname.or(file.hostname),
            system: self.system.or(file.system),
            spool: self.spool.or(file.spool),
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            inbound_tls: self.inbound_tls.or(file.inbound_tls),
            outbound_tls: self.outbound_tls.or(file.outbound_tls),
            ca: self.ca.or(file.ca),
            tls_versions: if self.tls_versions.is_empty() { file.tls_versions } else { self.tls_versions },
            tls_ciphers: if self.tls_ciphers.is_empty() { file.tls_ciphers } else { self.tls_ciphers },
            tls_groups: if self.tls_groups.is_empty() { file.tls_groups } else { self.tls_groups },
            tls_provider: self.tls_provider.or(file.tls_provider),
            routes: if self.routes.is_empty() { file.routes } else { self.routes },
            dns: self.dns.or(file.dns),
            mx_port: self.mx_port.or(file.mx_port),
            trust_anchor: self.trust_anchor.or(file.trust_anchor),
            local_domains: if self.local_domains.is_empty() { file.local_domains } else { self.local_domains },
            mailbox_dir: self.mailbox_dir.or(file.mailbox_dir),
            relay_domains: if self.relay_domains.is_empty() { file.relay_domains } else { self.relay_domains },
            relay_clients: if self.relay_clients.is_empty() { file.relay_clients } else { self.relay_clients },
            queue_lifetime: self.queue_lifetime.or(file.queue_lifetime),
            bind: self.bind.or(file.bind),
            submission: self.submission.or(file.submission),
            exit_on_stdin_eof: self.exit_on_stdin_eof,
            records: self.records.or(file.records),
            retry_first: self.retry_first.or(file.retry_first),
            retry_max: self.retry_max.or(file.retry_max),
            keylog: self.keylog.or(file.keylog),
        })
    }
}
