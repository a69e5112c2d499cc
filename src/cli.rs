//! The command-line interface.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

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
    },
    /// Dissect a capture (pcap or pcapng) as the eavesdropper: SMTP in the clear, TLS metadata.
    Tap {
        capture: PathBuf,
        #[arg(long, value_enum, default_value_t = TapFormat::Table)]
        format: TapFormat,
    },
    /// Analyse a run directory: join ground truth with the tap's records.
    Analyze { run_dir: PathBuf },
    /// Rebuild a run directory's report from its saved files.
    Report { run_dir: PathBuf },
    /// Run one relay on its own, to sit between real MTAs in any testbed.
    Relay(RelayArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum TapFormat {
    /// One JSON object per line, `record` = "session" or "transaction".
    Jsonl,
    /// A human summary.
    Table,
}

#[derive(clap::Args)]
pub struct RelayArgs {
    /// Address of the SMTP listener.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Name in the greeting, EHLO and Received headers.
    #[arg(long)]
    pub hostname: String,
    /// Spool directory (the durable queue).
    #[arg(long)]
    pub spool: PathBuf,
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    #[arg(long, default_value = "may")]
    pub inbound_tls: relay::InboundTls,
    #[arg(long, default_value = "may")]
    pub outbound_tls: relay::OutboundTls,
    /// CA certificates (PEM) for `--outbound-tls verify`.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Where mail for a domain goes: DOMAIN=HOST:PORT (HOST is the MX name, resolved once now).
    #[arg(long = "route")]
    pub routes: Vec<String>,
    /// Domains delivered into --mailbox-dir.
    #[arg(long = "local-domain")]
    pub local_domains: Vec<String>,
    #[arg(long, default_value = "mailboxes")]
    pub mailbox_dir: PathBuf,
    /// Source address for outgoing connections.
    #[arg(long)]
    pub bind: Option<IpAddr>,
    /// Session records, one JSON line each.
    #[arg(long)]
    pub records: Option<PathBuf>,
    /// NSS key log for Wireshark.
    #[arg(long)]
    pub keylog: Option<PathBuf>,
}
