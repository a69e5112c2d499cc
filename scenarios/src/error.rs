//! Scenario errors, named by what failed so a caller can match on it, each naming the file,
//! line, address or system involved and, where there is one, what to do. In four groups:
//!
//! - the input is wrong: a scenario or sweep file (with where and a hint), a `--run-dir`;
//! - a run could not start: a service's port taken, a backend's tool or binary missing, a
//!   certificate, key or traffic distribution not made;
//! - a run went wrong: a relay, the capture, the submission, the namespaces, the Shadow simulation;
//! - a file of the run directory could not be read or written.
//!
//! Subsystems with several ways to fail have their own enum inside the top one, as rustls keeps
//! `PeerMisbehaved` inside its `Error`: [`SubmissionError`], [`DnsError`], [`PkiError`],
//! [`TrafficError`], [`NetnsError`], [`ShadowError`]. Every variant keeps what caused it as its
//! `source` where there is a typed one.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    // The input is wrong.
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid { path: String, key: String, message: String },
    #[error("--run-dir {dir}: {message}")]
    RunDir { dir: String, message: String },
    /// `smtplab sweep --status` on a directory without `sweep.json`.
    #[error("{path} does not exist: is this a sweep directory? (`smtplab sweep FILE --plan` writes it)")]
    NotASweep { path: PathBuf },

    // A run could not start.
    /// The netns and shadow backends start relays as processes of the smtplab binary; the
    /// caller gave none (a library caller's mistake: the binary always passes itself).
    #[error("the {backend} backend runs the smtplab binary as its relays: pass its path (RunOptions::relay_exe)")]
    NoRelayExecutable { backend: &'static str },
    #[error(
        "cannot start the MTA-STS policy server on {addr}: {source}; set network.https_port to a free port \
         (1024 or above without root)"
    )]
    PolicyServerBind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Dns(#[from] DnsError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Traffic(#[from] TrafficError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Shadow(#[from] ShadowError),
    /// Slurm refused or could not be reached; the message says what to do.
    #[error("{0}")]
    Slurm(String),

    // A run went wrong.
    #[error(transparent)]
    Capture(#[from] tap::TapError),
    #[error(transparent)]
    Relay(#[from] relay::RelayError),
    /// A system's relay refused its cover traffic configuration.
    #[error("{system}: cover traffic: {source}")]
    Cover { system: String, source: relay::RelayError },
    #[error(transparent)]
    Submission(#[from] SubmissionError),

    // A file could not be read or written.
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// A JSON-lines file (records names the file, and the line of a bad record).
    #[error(transparent)]
    Records(#[from] records::RecordError),
    /// A JSON run file such as `manifest.json` (records names the file and its kind).
    #[error(transparent)]
    RunFile(#[from] records::RunFileError),
    /// A capture the run reads back (the DNS messages of `capture.pcap`).
    #[error("{path}: {source}")]
    CaptureFile { path: PathBuf, source: tap::pcapfile::ReadError },
    /// A relay's `sessions.jsonl`, while the records of a run are merged.
    #[error("{path}:{line}: a relay wrote an unreadable session record: {source}; run again (did the relay crash?)")]
    RelayRecord { path: PathBuf, line: usize, source: serde_json::Error },
    /// A record read once to index it no longer parses when read again to merge it.
    #[error(
        "{path}: the session record at byte {offset} changed while it was merged: {source}; is another \
         process writing into the run directory?"
    )]
    RelayRecordChanged { path: PathBuf, offset: u64, source: serde_json::Error },
    /// `truth/messages.jsonl`, written by this run, read back to keep only what was submitted.
    #[error("{path}:{line}: the truth this run wrote is unreadable: {source}")]
    TruthRecord { path: PathBuf, line: usize, source: serde_json::Error },
    /// A value of the run (the scenario, a sweep point, a configuration) could not be written
    /// as TOML or JSON; `what` names it.
    #[error("serialising {what}: {source}")]
    Serialize { what: String, source: Box<dyn std::error::Error + Send + Sync> },
}

impl ScenarioError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| ScenarioError::Io { what, source }
    }

    /// The error of serialising `what` (for `map_err`).
    pub fn serialize<E: std::error::Error + Send + Sync + 'static>(what: impl Into<String>) -> impl FnOnce(E) -> Self {
        let what = what.into();
        move |source| ScenarioError::Serialize { what, source: Box::new(source) }
    }
}

/// The injector's SMTP submission to a system (`inject::Submitter`), by what went wrong.
#[derive(Debug, thiserror::Error)]
pub enum SubmissionError {
    #[error("submission to {server}: connect timed out")]
    ConnectTimeout { server: SocketAddr },
    /// Connecting, reading or writing.
    #[error("submission to {server}: {source}")]
    Io { server: SocketAddr, source: std::io::Error },
    /// The name to verify the server's certificate against is not a DNS name.
    #[error("submission to {server}: bad name {name}: {source}")]
    ServerName { server: SocketAddr, name: String, source: rustls::pki_types::InvalidDnsNameError },
    #[error("submission to {server}: TLS handshake timed out")]
    HandshakeTimeout { server: SocketAddr },
    #[error("submission to {server}: TLS handshake: {source}")]
    Handshake { server: SocketAddr, source: std::io::Error },
    /// STARTTLS on a session already over TLS (the submitter's own mistake).
    #[error("submission to {server}: STARTTLS twice")]
    AlreadyTls { server: SocketAddr },
    #[error("submission to {server}: write timed out")]
    WriteTimeout { server: SocketAddr },
    /// The server's reply could not be read as a reply.
    #[error("submission to {server}: bad reply: {source}")]
    BadReply { server: SocketAddr, source: proto::reply::ReplyError },
    /// The server answered `after` with another code than `expected` (a refusal, usually).
    #[error("submission to {server}: {after:?} got {} (expected {expected})", .reply.summary())]
    Refused { server: SocketAddr, after: String, reply: proto::Reply, expected: u16 },
    #[error("submission to {server}: no reply to {after:?}")]
    NoReply { server: SocketAddr, after: String },
    #[error("submission to {server}: closed after {after:?}")]
    Closed { server: SocketAddr, after: String },
    /// A message's Poisson arrival time is beyond what the clock can hold.
    #[error("message {seq}: arrival time {at} s cannot be scheduled")]
    Unschedulable { seq: u64, at: f64 },
    /// A system's submitter task panicked or was cancelled.
    #[error("submission task failed: {0}")]
    TaskFailed(#[source] tokio::task::JoinError),
    /// The traffic generator's thread panicked or was cancelled.
    #[error("traffic generator failed: {0}")]
    GeneratorFailed(#[source] tokio::task::JoinError),
}

/// The scenario's DNS server and its zones (`dns`).
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// `fix` says what to change for this kind of failure.
    #[error("cannot start the scenario's DNS server on {addr} ({protocol}): {source}; {fix}")]
    Bind { addr: SocketAddr, protocol: &'static str, source: std::io::Error, fix: &'static str },
    #[error("{name:?} is not a DNS name: {source}")]
    Name { name: String, source: hickory_server::proto::ProtoError },
    #[error("DNSSEC key generation failed: {0}")]
    KeyGeneration(#[source] hickory_server::proto::dnssec::DnsSecError),
    #[error("DNSSEC key: {0}")]
    Key(#[source] hickory_server::proto::dnssec::DnsSecError),
    #[error("DNSSEC public key: {0}")]
    PublicKey(#[source] hickory_server::proto::dnssec::DnsSecError),
    #[error("signing zone {zone}: {source}")]
    Signing { zone: String, source: hickory_server::proto::dnssec::DnsSecError },
}

/// The scenario's certificates (`pki`) and the TLSA records made from them (`dane`).
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation failed: {0}")]
    Generate(#[source] rcgen::Error),
    #[error("certificate PEM: {0}")]
    Pem(#[source] std::io::Error),
    /// A DANE system's chain holds no certificate to make its TLSA record from.
    #[error("a DANE system has no certificate")]
    NoCertificate,
    /// The certificate is not X.509 (the source is the parser's reason).
    #[error("TLSA record: {0}")]
    Tlsa(#[source] relay::dane::NotACertificate),
}

/// The seeded traffic (`traffic`): distributions the scenario's values do not make (validation
/// bounds them, so these mean a gap in it), or a message that could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    #[error("traffic size distribution: {0}")]
    Sizes(#[source] rand_distr::NormalError),
    #[error("traffic attachment size: {0}")]
    AttachmentSizes(#[source] rand_distr::NormalError),
    #[error("traffic rate: {0}")]
    Rate(#[source] rand_distr::ExpError),
    #[error("traffic zipf: {0}")]
    Zipf(#[source] rand_distr::ZipfError),
    #[error("traffic: the scenario has no users")]
    NoUsers,
    #[error("traffic building message {seq}: {source}")]
    Build { seq: u64, source: std::io::Error },
}

/// The netns backend's namespaces, links and relay processes (`netns`).
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error(
        "this kernel has no netem (sch_netem), so network.delay_ms and network.loss_percent cannot be \
         applied here; set them to 0 or run on a kernel with netem"
    )]
    NoNetem,
    /// An `ip` or `tc` command failed; `stderr` is what it said.
    #[error("`{command}` failed: {stderr} (the netns backend needs root)")]
    Command { command: String, stderr: String },
    /// A relay process did not listen in time; `log` is its output, `output` what it held.
    #[error("relay in {namespace} did not listen on {addr}; its log {log}: {output}")]
    RelayNotListening { namespace: String, addr: SocketAddr, log: PathBuf, output: String },
}

/// The Shadow backend (`shadow`): the simulator, its run and its outputs.
#[derive(Debug, thiserror::Error)]
pub enum ShadowError {
    /// `$SMTPLAB_SHADOW` names no file.
    #[error(
        "{variable}={path} is not a file: build Shadow with scripts/install-shadow, or point {variable} at its \
         `shadow` binary"
    )]
    NotAFile { variable: &'static str, path: PathBuf },
    #[error(
        "network.backend = \"shadow\" needs the Shadow simulator, which is not installed (no `shadow` on the \
         PATH, none in {prefix}/bin): run scripts/install-shadow (builds it from source, pinned), or set \
         {variable} to its binary"
    )]
    NotInstalled { variable: &'static str, prefix: &'static str },
    /// Stopped by Ctrl-C (`interrupted`) or for running over its wall-time limit.
    #[error("Shadow was stopped after {secs:.0} s of wall time ({}): its log is {log}", stopped_why(.interrupted))]
    Stopped { secs: f64, interrupted: bool, log: PathBuf },
    /// Shadow exited with `status`; `detail` holds its summary and error lines and the last
    /// error line of each process's stderr.
    #[error("Shadow failed ({status}); its log is {log} and each process's output is in {data}/hosts/*/:\n{detail}")]
    Failed { status: std::process::ExitStatus, log: PathBuf, data: PathBuf, detail: String },
    /// The injector process's `truth/submissions.jsonl`.
    #[error("the injector's submissions: {0}")]
    Submissions(#[source] records::RecordError),
    #[error("Shadow's pcap {path}: {source}")]
    Pcap { path: PathBuf, source: tap::pcapfile::ReadError },
    #[error("Shadow's pcap {path}: link type {linktype}, expected raw IP (101)")]
    PcapLinkType { path: PathBuf, linktype: u32 },
}

fn stopped_why(interrupted: &bool) -> &'static str {
    if *interrupted { "interrupted" } else { "over its limit" }
}
