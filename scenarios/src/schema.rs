//! The scenario file (TOML). Every key, its default and an example are in SCENARIOS.md.

use std::net::Ipv4Addr;

use relay::mta_sts::{Mode, Policy};
use relay::{InboundTls, OutboundTls};
use serde::{Deserialize, Serialize};

use crate::error::ScenarioError;

/// Bounds checked before a run: beyond them a value would exhaust memory or overflow a clock
/// instead of giving an error.
const MAX_SYSTEMS: usize = 254 * 200;
const MAX_USERS: usize = 10_000_000;
const MAX_MESSAGES: usize = 10_000_000;
const MAX_RECIPIENTS: usize = 1000;
const MIN_RATE: f64 = 1e-6;
const MAX_RATE: f64 = 1e9;
const MAX_DRAIN_SECS: u64 = 7 * 24 * 3600;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub scenario: Meta,
    #[serde(default)]
    pub network: Network,
    #[serde(default)]
    pub traffic: Traffic,
    #[serde(default)]
    pub tap: TapSpec,
    /// Systems generated from a few numbers, appended to `systems` when the file is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub population: Option<Population>,
    #[serde(default)]
    pub systems: Vec<SystemSpec>,
    /// Active attackers on the path (`[[attacks]]`): see [`AttackSpec`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attacks: Vec<AttackSpec>,
    /// Set by `smtplab sweep` in each point's file: which sweep point this run is (written to
    /// the run directory as point.json).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point: Option<PointInfo>,
}

/// A generated population of mail systems: a few large providers holding most users and a long
/// tail of small systems, a share of them with STARTTLS.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Population {
    /// Small systems (named s001, s002, ...).
    pub systems: usize,
    /// Large providers (named p1, p2, ...).
    pub providers: usize,
    /// Users in all generated systems together.
    pub users: usize,
    /// Share of those users at the providers (when there are providers).
    pub provider_user_share: f64,
    /// Share of generated systems with STARTTLS; which ones is drawn from the scenario seed.
    pub starttls_share: f64,
    /// Whether providers always have STARTTLS (as the large ones do today).
    pub providers_starttls: bool,
    /// Outbound policy of the STARTTLS systems: "may" (default), "encrypt" or "verify".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbound_tls: Option<OutboundTls>,
    /// Or a mix of outbound policies over the STARTTLS systems, drawn from the seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbound_mix: Option<OutboundMix>,
}

/// Shares of the outbound policies among generated systems with STARTTLS, e.g.
/// `{ may = 0.7, encrypt = 0.2, none = 0.1 }`: each share in 0..=1, together 1. Checked while the
/// file is read, so an error names the line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "std::collections::BTreeMap<String, f64>", into = "std::collections::BTreeMap<String, f64>")]
pub struct OutboundMix {
    /// In the fixed order of [`OutboundMix::POLICIES`].
    shares: [f64; 4],
}

impl OutboundMix {
    /// The order in which shares are listed, and in which ties of the rounding are broken.
    pub const POLICIES: [OutboundTls; 4] =
        [OutboundTls::None, OutboundTls::May, OutboundTls::Encrypt, OutboundTls::Verify];
    const NAMES: [&'static str; 4] = ["none", "may", "encrypt", "verify"];

    /// How many of `n` systems get each policy (in [`OutboundMix::POLICIES`] order), by the
    /// largest remainder: each gets floor(share × n), and the systems left over go one each to
    /// the policies with the largest fractional parts (ties in `POLICIES` order). Every count is
    /// then less than 1 away from share × n, and the counts add up to n.
    pub fn counts(&self, n: usize) -> [usize; 4] {
        let exact = self.shares.map(|s| s * n as f64);
        let mut counts = exact.map(|e| e.floor() as usize);
        let left = n.saturating_sub(counts.iter().sum());
        let mut by_remainder: Vec<usize> = (0..4).collect();
        // A stable sort keeps POLICIES order among equal remainders.
        by_remainder.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
        for &i in by_remainder.iter().take(left) {
            counts[i] += 1;
        }
        counts
    }
}

impl TryFrom<std::collections::BTreeMap<String, f64>> for OutboundMix {
    type Error = String;
    fn try_from(map: std::collections::BTreeMap<String, f64>) -> Result<Self, String> {
        let mut shares = [0.0; 4];
        for (k, v) in &map {
            let Some(i) = Self::NAMES.iter().position(|n| n == k) else {
                return Err(format!("outbound_mix: unknown policy {k:?}; use none, may, encrypt or verify"));
            };
            if !(0.0..=1.0).contains(v) {
                return Err(format!("outbound_mix: {k} = {v} is not a share between 0 and 1"));
            }
            shares[i] = *v;
        }
        let sum: f64 = shares.iter().sum();
        if (sum - 1.0).abs() > 1e-9 {
            return Err(format!(
                "outbound_mix: the shares add up to {sum}, not 1; e.g. {{ may = 0.7, encrypt = 0.2, none = 0.1 }}"
            ));
        }
        Ok(Self { shares })
    }
}

impl From<OutboundMix> for std::collections::BTreeMap<String, f64> {
    fn from(m: OutboundMix) -> Self {
        OutboundMix::NAMES.iter().zip(m.shares).filter(|(_, s)| *s > 0.0).map(|(n, s)| (n.to_string(), s)).collect()
    }
}

impl Default for Population {
    fn default() -> Self {
        Self {
            systems: 10,
            providers: 0,
            users: 100,
            provider_user_share: 0.8,
            starttls_share: 0.5,
            providers_starttls: true,
            outbound_tls: None,
            outbound_mix: None,
        }
    }
}

/// An active attacker: a program on its own addresses that the scenario's DNS (in process or the
/// server) puts in front of the MX of each domain it intercepts. It relays every session on to
/// the real MX so mail is delivered, and attacks a seeded `share` of the targeted sessions that
/// begin after `start`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackSpec {
    /// Name in the attacker's records; default `attacker1`, `attacker2`, ... in file order.
    #[serde(default)]
    pub name: String,
    pub attack: AttackKind,
    /// fake-mx: the certificate it presents; default `self-signed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<FakeCertificate>,
    /// Domains whose every incoming session is targeted.
    #[serde(default)]
    pub domains: Vec<String>,
    /// `[sender, receiver]` system names: sessions from the sender to the receiver's MX are
    /// targeted (the receiver's other senders pass through).
    #[serde(default)]
    pub links: Vec<[String; 2]>,
    /// The attacker's effort as a share of all the scenario's domains: it also intercepts
    /// round(share × domains) of them, drawn from the scenario seed among those no earlier
    /// attacker intercepts. The draw takes the first domains of one seeded order, so at one seed
    /// a larger share targets a superset of a smaller one (an effort sweep adds targets, it does
    /// not reshuffle them). The drawn domains are added to `domains` when the scenario is read
    /// and the share is dropped (kept only when it drew nothing), so the resolved scenario in a
    /// run directory runs the same under any seed. `0` is an attacker with no targets: the baseline of a sweep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_share: Option<f64>,
    /// Seconds after traffic starts before the first session is attacked.
    #[serde(default)]
    pub start: f64,
    /// Share of the targeted sessions attacked, drawn per session from the scenario seed.
    #[serde(default = "one")]
    pub share: f64,
    /// Also block the MTA-STS policy fetch of the intercepted domains (`"drop"` or
    /// `"self-signed"`): see [`FetchBlock`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_fetch: Option<FetchBlock>,
}

fn one() -> f64 {
    1.0
}

/// What an attacker does to a targeted session (the classes measured in the wild: Durumeric et
/// al., IMC 2015; striptls; the injection classes of Poddebniak et al., "Why TLS is better
/// without STARTTLS", USENIX Security 2021).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttackKind {
    /// Removes STARTTLS from the EHLO reply.
    #[serde(rename = "strip")]
    Strip,
    /// Overwrites STARTTLS in the EHLO reply with XXXXXXXA, as middleboxes do.
    #[serde(rename = "strip-xxxxxxxa")]
    StripXxxxxxxa,
    /// Answers STARTTLS with `454 4.7.0 TLS not available`.
    #[serde(rename = "454")]
    Refuse454,
    /// Terminates STARTTLS itself with its own certificate, reads, and relays onward over TLS.
    #[serde(rename = "fake-mx")]
    FakeMx,
    /// Against the receiving server (CVE-2011-0411 class): keeps its onward leg in plaintext,
    /// and writes the victim's STARTTLS to the real MX with plaintext commands behind it in the
    /// same write, which a vulnerable server executes inside the TLS session.
    #[serde(rename = "inject-command")]
    InjectCommand,
    /// Against the sending client: passes the real MX's `220` to STARTTLS with a fake reply
    /// behind it in the same write, which a vulnerable client reads as the server's first reply
    /// inside TLS; then copies the end-to-end TLS both ways.
    #[serde(rename = "inject-response")]
    InjectResponse,
}

impl AttackKind {
    pub fn name(self) -> &'static str {
        match self {
            AttackKind::Strip => "strip",
            AttackKind::StripXxxxxxxa => "strip-xxxxxxxa",
            AttackKind::Refuse454 => "454",
            AttackKind::FakeMx => "fake-mx",
            AttackKind::InjectCommand => "inject-command",
            AttackKind::InjectResponse => "inject-response",
        }
    }

    /// The attacks that inject plaintext around STARTTLS: their onward leg stays in plaintext
    /// until the victim says STARTTLS, so that the victim's TLS is end to end with the real MX.
    pub fn injects(self) -> bool {
        matches!(self, AttackKind::InjectCommand | AttackKind::InjectResponse)
    }
}

/// The certificate of a fake MX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FakeCertificate {
    /// Self-signed, for the real MX's name: passes `may` and `encrypt`, fails `verify`.
    SelfSigned,
    /// Issued by the scenario CA the victims trust, for another name: fails `verify` on the name.
    WrongName,
    /// Issued by the scenario CA for the real MX's name (a compromised or coerced CA): passes
    /// `verify`.
    CompromisedCa,
}

impl FakeCertificate {
    pub fn name(self) -> &'static str {
        match self {
            FakeCertificate::SelfSigned => "self-signed",
            FakeCertificate::WrongName => "wrong-name",
            FakeCertificate::CompromisedCa => "compromised-ca",
        }
    }
}

/// Which sweep point a scenario is (`[point]`, set by `smtplab sweep`); written to the run
/// directory as `point.json`.
pub use records::PointInfo;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    pub name: String,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Seconds to wait for queues to drain before the run is declared stuck.
    #[serde(default = "default_drain")]
    pub drain_timeout: u64,
    /// Also run the same scenario and seed with STARTTLS off everywhere, into `control/`.
    #[serde(default)]
    pub compare_plaintext: bool,
    /// Messages still queued at the drain timeout are an expected outcome (e.g. `encrypt`
    /// towards systems without STARTTLS defers them), not a failed run.
    #[serde(default)]
    pub allow_undelivered: bool,
}

/// Upper bound of rate × duration: a typo in either should fail, not run for days.
const MAX_EXPECTED_MESSAGES: f64 = 10_000_000.0;

fn default_seed() -> u64 {
    1997
}

fn default_drain() -> u64 {
    120
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    /// "loopback" (each system on its own 127.x address, in process), "netns" (root: each
    /// system a relay process in its own network namespace, on a bridge the tap captures) or
    /// "shadow" (each system a relay process on its own host of a Shadow simulation, in
    /// simulated time: see `scenarios::shadow`).
    pub backend: String,
    pub smtp_port: u16,
    pub submission_port: u16,
    /// netns and shadow: one-way delay added to every system's link (netem, or the Shadow
    /// network graph), milliseconds.
    pub delay_ms: f64,
    /// netns and shadow: packet loss on every system's link (netem, or the graph), percent.
    pub loss_percent: f64,
    /// How relays find each other's MX: "in-process" (a map in each relay, nothing on the
    /// wire) or "server" (a real DNS server the runner starts, queried over UDP: the capture
    /// shows the MX queries).
    pub dns: String,
    /// The DNS server's address; default: loopback, the first system's address with last octet
    /// 53 (127.0.1.53 for generated addresses); netns, the bridge's root address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_address: Option<Ipv4Addr>,
    pub dns_port: u16,
    /// TTL of every record the server gives, seconds: how long each relay caches an answer.
    pub dns_ttl: u32,
    /// Port of the MTA-STS policy servers (443 in RFC 8461; moved as SMTP's 25 is).
    pub https_port: u16,
}

impl Default for Network {
    fn default() -> Self {
        Self {
            backend: "loopback".into(),
            smtp_port: 2525,
            submission_port: 2587,
            delay_ms: 0.0,
            loss_percent: 0.0,
            dns: "in-process".into(),
            dns_address: None,
            dns_port: 53,
            dns_ttl: 300,
            https_port: 8443,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Traffic {
    /// Messages to submit; the other way to say how much traffic is `duration`. Neither: 300.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<usize>,
    /// Seconds of Poisson arrivals at `rate`, submitted in real time: the traffic is every
    /// arrival before this time. Needs `rate` > 0; excludes `messages`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    pub users_per_system: usize,
    /// Median message size in bytes (log-normal).
    pub size_median: f64,
    /// Sigma of the log-normal size distribution.
    pub size_sigma: f64,
    pub max_recipients: usize,
    /// Share of messages whose recipients are all in the sender's own system.
    pub intra_system_share: f64,
    /// Mean submissions per second (Poisson arrivals); 0 submits as fast as the relays accept.
    pub rate: f64,
    /// Probability that a message carries a binary attachment.
    pub attachment_probability: f64,
    /// Median attachment size in bytes (log-normal, sigma 1).
    pub attachment_median: f64,
    /// How senders pick correspondents: "uniform", or "zipf" (a few popular users receive most).
    pub correspondents: String,
    /// Exponent of the Zipf choice.
    pub zipf_exponent: f64,
    /// Share of users who send every message with REQUIRETLS (RFC 8689): the injector submits
    /// it over STARTTLS with `MAIL FROM:<...> REQUIRETLS`, and each hop must then be verified
    /// TLS to a REQUIRETLS relay or the message bounces. Which users, is drawn from the seed
    /// apart from the rest of the traffic (the messages of a seed stay the same at any share).
    pub requiretls_share: f64,
}

impl Default for Traffic {
    fn default() -> Self {
        Self {
            messages: None,
            duration: None,
            users_per_system: 10,
            size_median: 4000.0,
            size_sigma: 0.9,
            max_recipients: 3,
            intra_system_share: 0.1,
            rate: 0.0,
            attachment_probability: 0.0,
            attachment_median: 20_000.0,
            correspondents: "uniform".into(),
            zipf_exponent: 1.0,
            requiretls_share: 0.0,
        }
    }
}

/// Messages of a scenario that gives neither `messages` nor `duration`.
pub const DEFAULT_MESSAGES: usize = 300;

impl Traffic {
    /// The message count of a count-based scenario (`messages`, or the default).
    pub fn message_count(&self) -> usize {
        self.messages.unwrap_or(DEFAULT_MESSAGES)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TapSpec {
    /// `live` (libpcap on `device`; root or CAP_NET_RAW), `recorder` (no privileges: each
    /// system-to-system connection is relayed through a proxy on `smtp_port + 2` that writes
    /// the same pcap format; loopback backend only), or `none`.
    pub capture: String,
    pub device: String,
    /// Also capture the submission lines (users to their own system).
    pub access_lines: bool,
    /// Which lines between systems are tapped: "all", "pairs" (those in `pairs`), or
    /// "fraction" (a seeded `fraction` of all system pairs, like a backbone tap).
    pub links: String,
    /// System name pairs for `links = "pairs"`, e.g. [["alpha", "beta"]] (both directions).
    pub pairs: Vec<[String; 2]>,
    /// Share of system pairs tapped for `links = "fraction"`.
    pub fraction: f64,
    /// Share of users whose access line (their submission sessions to their own system) is
    /// tapped too, drawn from the seed. Above 0, every user submits from an address of its own
    /// (`access_addresses` + its index), one connection per message, as a mail client would.
    pub access_share: f64,
    /// The first user's source address when `access_share` > 0; user `k` (systems in order,
    /// then their users) gets this address + `k`.
    pub access_addresses: Ipv4Addr,
}

impl Default for TapSpec {
    fn default() -> Self {
        Self {
            capture: "live".into(),
            device: "lo".into(),
            access_lines: false,
            links: "all".into(),
            pairs: Vec::new(),
            fraction: 1.0,
            access_share: 0.0,
            access_addresses: Ipv4Addr::new(127, 224, 0, 1),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemSpec {
    pub name: String,
    pub domain: String,
    /// Defaults to 127.0.N.1 for the N-th system (from 1).
    pub address: Option<Ipv4Addr>,
    /// Whether the system has a certificate and speaks STARTTLS at all.
    pub starttls: bool,
    /// Users of this system; defaults to `traffic.users_per_system`.
    pub users: Option<usize>,
    /// Defaults: `may` with STARTTLS, `none` without.
    pub inbound_tls: Option<InboundTls>,
    pub outbound_tls: Option<OutboundTls>,
    /// TLS versions, cipher suites and key-exchange groups this system allows.
    #[serde(default)]
    pub tls: relay::TlsSettings,
    /// Honour MTA-STS (RFC 8461) when sending, on top of `outbound_tls`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mta_sts: bool,
    /// Publish an MTA-STS policy for this system's domain: see [`PolicySpec`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mta_sts_policy: Option<PolicySpec>,
    /// Whether the scenario's DNS server signs this system's zone: `false` (default), `true`, or
    /// `"bogus"` (signed with a key its parent does not vouch for). Needs `network.dns = "server"`.
    #[serde(default)]
    pub dnssec: crate::dane::Dnssec,
    /// The TLSA record published for its MX: `"3 1 1"`, `"2 1 1"` or `"none"` (default).
    #[serde(default)]
    pub dane: crate::dane::DaneRecord,
    /// How its relay uses outbound sessions: connection reuse and its limits (Postfix's names
    /// and defaults), pipelining. SCENARIOS.md, "Outbound sessions".
    #[serde(default)]
    pub delivery: relay::DeliveryOptions,
}

impl SystemSpec {
    pub fn mx_host(&self) -> String {
        format!("mx.{}", self.domain)
    }

    pub fn inbound(&self) -> InboundTls {
        self.inbound_tls.unwrap_or(if self.starttls { InboundTls::May } else { InboundTls::None })
    }

    pub fn outbound(&self) -> OutboundTls {
        self.outbound_tls.unwrap_or(if self.starttls { OutboundTls::May } else { OutboundTls::None })
    }
}

impl Scenario {
    /// The tapped links as unordered pairs of system indexes, or `None` for all of them. The
    /// fraction is drawn from the seed, so the same scenario taps the same lines.
    pub fn tapped_links(&self) -> Option<Vec<(usize, usize)>> {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        let index = |n: &str| self.systems.iter().position(|s| s.name == n);
        match self.tap.links.as_str() {
            "pairs" => Some(
                self.tap
                    .pairs
                    .iter()
                    .filter_map(|[a, b]| Some((index(a)?.min(index(b)?), index(a)?.max(index(b)?))))
                    .collect(),
            ),
            "fraction" => {
                let n = self.systems.len();
                let mut all: Vec<(usize, usize)> = (0..n).flat_map(|a| (a + 1..n).map(move |b| (a, b))).collect();
                let keep = (self.tap.fraction * all.len() as f64).round() as usize;
                all.shuffle(&mut rand_chacha::ChaCha20Rng::seed_from_u64(self.scenario.seed ^ 0x7461_7073));
                all.truncate(keep);
                all.sort_unstable();
                Some(all)
            }
            _ => None,
        }
    }

    /// Per user (in the order of `traffic::users`): the source address of its submission
    /// sessions and whether its access line is tapped; empty unless `tap.access_share` > 0.
    /// Exactly round(share × users) lines are tapped, drawn from the seed.
    pub fn access_taps(&self) -> Vec<(Ipv4Addr, bool)> {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        if self.tap.access_share <= 0.0 {
            return Vec::new();
        }
        let n = self.systems.iter().map(|s| s.users.unwrap_or(self.traffic.users_per_system)).sum::<usize>();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rand_chacha::ChaCha20Rng::seed_from_u64(self.scenario.seed ^ 0x6163_6365_7373));
        order.truncate((self.tap.access_share * n as f64).round() as usize);
        let tapped: std::collections::HashSet<usize> = order.into_iter().collect();
        let base = u32::from(self.tap.access_addresses);
        (0..n).map(|k| (Ipv4Addr::from(base.saturating_add(k as u32)), tapped.contains(&k))).collect()
    }

    /// The paired control: the same scenario and seed with STARTTLS off on every system.
    pub fn plaintext_control(&self) -> Scenario {
        let mut c = self.clone();
        c.scenario.compare_plaintext = false;
        // The control measures the passive eavesdropper without STARTTLS: no attacker.
        c.attacks.clear();
        for sys in &mut c.systems {
            sys.starttls = false;
            sys.inbound_tls = Some(InboundTls::None);
            sys.outbound_tls = Some(OutboundTls::None);
            // Without TLS there is nothing for MTA-STS to require, or to publish.
            sys.mta_sts = false;
            sys.mta_sts_policy = None;
        }
        c
    }

    /// Moves the SMTP, submission and DNS ports up by `by`, so that several runs share one host
    /// (sweep workers, Slurm tasks on one node): each listens and captures on ports of its own.
    /// The ports change no result. Errs, changing nothing, when a port would pass 65535.
    pub fn shift_ports(&mut self, by: u16) -> Result<(), String> {
        let net = &mut self.network;
        let shifted = [net.smtp_port, net.submission_port, net.dns_port, net.https_port].map(|p| p.checked_add(by));
        let [Some(smtp), Some(submission), Some(dns), Some(https)] = shifted else {
            return Err(format!(
                "ports {by} above smtp_port {}, submission_port {}, dns_port {} and https_port {} pass 65535",
                net.smtp_port, net.submission_port, net.dns_port, net.https_port
            ));
        };
        (net.smtp_port, net.submission_port, net.dns_port, net.https_port) = (smtp, submission, dns, https);
        Ok(())
    }

    /// Parses and checks a scenario; `path` names the source in errors, and an invalid value's
    /// error gives the line and column of its key in `text`.
    pub fn parse(text: &str, path: &str) -> Result<Scenario, ScenarioError> {
        Self::parse_checked(text, path).map_err(|e| match e {
            ScenarioError::Invalid { path, key, message } => {
                let key = match crate::locate::locate(text, &key) {
                    Some((line, column)) => format!("{key} (line {line}, column {column})"),
                    None => key,
                };
                ScenarioError::Invalid { path, key, message }
            }
            other => other,
        })
    }

    /// [`Scenario::parse`] for text the program wrote (a sweep point), whose lines are not the
    /// user's: errors name the key only.
    pub fn parse_generated(text: &str, path: &str) -> Result<Scenario, ScenarioError> {
        Self::parse_checked(text, path)
    }

    fn parse_checked(text: &str, path: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            path: path.to_string(),
            message: format!("{e}hint: see SCENARIOS.md for every key and its default"),
        })?;
        let mut s = s;
        s.expand_population(path)?;
        for (i, a) in s.attacks.iter_mut().enumerate() {
            if a.name.is_empty() {
                a.name = format!("attacker{}", i + 1);
            }
        }
        s.draw_attacked_domains(path)?;
        s.validate(path)?;
        s.validate_attacks(path)?;
        validate_mta_sts(&s, path)?;
        // The resolved scenario (written to every run directory) says how much traffic it had.
        if s.traffic.duration.is_none() {
            s.traffic.messages = Some(s.traffic.message_count());
        }
        Ok(s)
    }

    /// Appends the generated systems and forgets the recipe, so the resolved scenario (written
    /// to every run directory) lists each system explicitly.
    fn expand_population(&mut self, path: &str) -> Result<(), ScenarioError> {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        let Some(p) = self.population.take() else { return Ok(()) };
        let bad = |key: &str, message: &str| ScenarioError::Invalid {
            path: path.to_string(),
            key: format!("population.{key}"),
            message: message.to_string(),
        };
        if !(0.0..=1.0).contains(&p.starttls_share) {
            return Err(bad("starttls_share", "a share between 0 and 1"));
        }
        if !(0.0..=1.0).contains(&p.provider_user_share) {
            return Err(bad("provider_user_share", "a share between 0 and 1"));
        }
        // Checked before anything is generated: a huge count must not exhaust memory first.
        if p.systems.saturating_add(p.providers) > MAX_SYSTEMS {
            return Err(bad("systems", "at most 50,800 generated systems (providers + systems) in one run"));
        }
        if p.users > MAX_USERS {
            return Err(bad("users", "at most 10,000,000 users in one run"));
        }
        if p.systems + p.providers == 0 || p.users < p.systems + p.providers {
            return Err(bad("users", "at least one user per generated system"));
        }
        let provider_users = if p.providers > 0 {
            ((p.users as f64 * p.provider_user_share).round() as usize).max(p.providers)
        } else {
            0
        };
        let small_users = p.users - provider_users;
        // Which small systems have STARTTLS: exactly round(share × count), drawn from the seed.
        let with_tls = (p.starttls_share * p.systems as f64).round() as usize;
        let mut order: Vec<usize> = (0..p.systems).collect();
        order.shuffle(&mut rand_chacha::ChaCha20Rng::seed_from_u64(self.scenario.seed ^ 0x5157_4152_544c_5300));
        let tls_set: std::collections::HashSet<usize> = order.into_iter().take(with_tls).collect();
        if p.outbound_tls.is_some() && p.outbound_mix.is_some() {
            return Err(bad("outbound_mix", "give either outbound_tls (one policy) or outbound_mix, not both"));
        }
        let spec = |name: String, users: usize, starttls: bool| SystemSpec {
            domain: format!("{name}.example"),
            name,
            address: None,
            starttls,
            users: Some(users),
            inbound_tls: None,
            outbound_tls: starttls.then_some(p.outbound_tls.unwrap_or(OutboundTls::May)),
            tls: Default::default(),
            mta_sts: false,
            mta_sts_policy: None,
            dnssec: Default::default(),
            dane: Default::default(),
            delivery: Default::default(),
        };
        let first = self.systems.len();
        for i in 0..p.providers {
            let users = provider_users / p.providers + usize::from(i < provider_users % p.providers);
            let starttls = p.providers_starttls || tls_set.contains(&i);
            self.systems.push(spec(format!("p{}", i + 1), users, starttls));
        }
        for i in 0..p.systems {
            let users = (small_users / p.systems.max(1) + usize::from(i < small_users % p.systems.max(1))).max(1);
            self.systems.push(spec(format!("s{:03}", i + 1), users, tls_set.contains(&i)));
        }
        if let Some(mix) = &p.outbound_mix {
            // Exact counts over the generated STARTTLS systems, which system gets which drawn
            // from a generator of its own: the draws above stay as they were without a mix.
            let with_tls: Vec<usize> = (first..self.systems.len()).filter(|&i| self.systems[i].starttls).collect();
            let mut policies: Vec<OutboundTls> = OutboundMix::POLICIES
                .iter()
                .zip(mix.counts(with_tls.len()))
                .flat_map(|(&policy, count)| std::iter::repeat_n(policy, count))
                .collect();
            policies.shuffle(&mut rand_chacha::ChaCha20Rng::seed_from_u64(self.scenario.seed ^ 0x6f75_746d_6978));
            for (i, policy) in with_tls.into_iter().zip(policies) {
                self.systems[i].outbound_tls = Some(policy);
            }
        }
        Ok(())
    }

    /// Where the scenario's DNS server listens, when it has one (`network.dns = "server"`).
    pub fn dns_server(&self) -> Option<std::net::SocketAddr> {
        if self.network.dns != "server" {
            return None;
        }
        let ip = self.network.dns_address.unwrap_or_else(|| {
            if self.uses_netns_addresses() {
                crate::netns::ROOT_ADDR
            } else {
                let [a, b, c, _] = self.address(0).octets();
                Ipv4Addr::new(a, b, c, 53)
            }
        });
        Some(std::net::SocketAddr::new(std::net::IpAddr::V4(ip), self.network.dns_port))
    }

    /// The system's own address: 127.0.N.1 for the N-th system up to 254, then 127.M.N.1.
    pub fn address(&self, index: usize) -> Ipv4Addr {
        if self.uses_netns_addresses() {
            return crate::netns::address(index);
        }
        let (hi, lo) = (index / 254, index % 254);
        self.systems[index].address.unwrap_or(Ipv4Addr::new(127, hi as u8, (lo + 1) as u8, 1))
    }

    /// The netns backend's addresses (10.233.0.0/16, the injector at the root address) are the
    /// Shadow backend's too: its relays then take the same flags as netns relay processes.
    fn uses_netns_addresses(&self) -> bool {
        matches!(self.network.backend.as_str(), "netns" | "shadow")
    }

    /// The domains attacker `k` intercepts, in order: its `domains`, then its links' receivers.
    pub fn intercepted_domains(&self, k: usize) -> Vec<String> {
        let a = &self.attacks[k];
        let mut out: Vec<String> = Vec::new();
        let receivers =
            a.links.iter().filter_map(|[_, r]| self.systems.iter().find(|s| &s.name == r)).map(|s| s.domain.clone());
        for d in a.domains.iter().cloned().chain(receivers) {
            if !out.iter().any(|o| o.eq_ignore_ascii_case(&d)) {
                out.push(d);
            }
        }
        out
    }

    /// The address at which attacker `k` stands in for the MX of its `j`-th intercepted domain:
    /// 127.254.(k+1).(j+1), a block no generated system uses.
    pub fn attacker_address(&self, k: usize, j: usize) -> Ipv4Addr {
        Ipv4Addr::new(127, 254, (k + 1) as u8, (j + 1) as u8)
    }

    /// Where DNS sends each intercepted domain's MX: (domain, attacker index, address).
    pub fn interceptions(&self) -> Vec<(String, usize, Ipv4Addr)> {
        (0..self.attacks.len())
            .flat_map(|k| {
                self.intercepted_domains(k)
                    .into_iter()
                    .enumerate()
                    .map(move |(j, d)| (d, k, self.attacker_address(k, j)))
            })
            .collect()
    }

    /// DANE needs the DNS server (the relays validate its answers) and a certificate to publish.
    fn validate_dane(&self, i: usize, path: &str) -> Result<(), ScenarioError> {
        use crate::dane::{DaneRecord, Dnssec};
        let s = &self.systems[i];
        let bad = |field: &str, message: String| ScenarioError::Invalid {
            path: path.to_string(),
            key: format!("systems[{i}].{field}"),
            message,
        };
        let no_server = self.network.dns != "server";
        let dane_policy = matches!(s.outbound(), OutboundTls::Dane | OutboundTls::DaneOnly);
        for (field, used) in [
            ("dnssec", s.dnssec != Dnssec::Unsigned),
            ("dane", s.dane != DaneRecord::None),
            ("outbound_tls", dane_policy),
        ] {
            if used && no_server {
                return Err(bad(
                    field,
                    "DANE and DNSSEC live in DNS: set network.dns = \"server\" so the scenario's DNS server \
                     publishes (and signs) the zones the relays validate"
                        .into(),
                ));
            }
        }
        if s.dane != DaneRecord::None && !s.starttls {
            return Err(bad(
                "dane",
                "a system without STARTTLS has no certificate to publish a TLSA record for".into(),
            ));
        }
        Ok(())
    }

    /// Adds to each attacker with a `domain_share` the domains it draws (see
    /// [`AttackSpec::domain_share`]).
    fn draw_attacked_domains(&mut self, path: &str) -> Result<(), ScenarioError> {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        let all: Vec<String> = self.systems.iter().map(|s| s.domain.clone()).collect();
        for k in 0..self.attacks.len() {
            let Some(share) = self.attacks[k].domain_share else { continue };
            if !(0.0..=1.0).contains(&share) {
                return Err(ScenarioError::Invalid {
                    path: path.to_string(),
                    key: format!("attacks[{k}].domain_share"),
                    message: format!("{share}: a share of the scenario's domains between 0 and 1"),
                });
            }
            // Earlier attackers are already drawn: a domain goes to one attacker only.
            let taken: Vec<String> = (0..k).flat_map(|j| self.intercepted_domains(j)).collect();
            let count = (share * all.len() as f64).round() as usize;
            let mut order = all.clone();
            order.shuffle(&mut rand_chacha::ChaCha20Rng::seed_from_u64(
                self.scenario.seed ^ 0x6566_666f_7274_0000 ^ k as u64,
            ));
            let drawn: Vec<String> =
                order.into_iter().filter(|d| !taken.iter().any(|t| t.eq_ignore_ascii_case(d))).take(count).collect();
            let a = &mut self.attacks[k];
            for d in drawn {
                if !a.domains.iter().any(|o| o.eq_ignore_ascii_case(&d)) {
                    a.domains.push(d);
                }
            }
            // Drawn once: the resolved scenario lists the domains and forgets the recipe, as
            // `expand_population` does, so parsing it again (under any seed) draws nothing more.
            // A share that drew nothing stays: it is what keeps a target-less attacker valid.
            if count > 0 {
                a.domain_share = None;
            }
        }
        Ok(())
    }

    fn validate_attacks(&self, path: &str) -> Result<(), ScenarioError> {
        let bad = |key: String, message: String| ScenarioError::Invalid { path: path.to_string(), key, message };
        if self.attacks.len() > 254 {
            return Err(bad("attacks".into(), "at most 254 attackers".into()));
        }
        if !self.attacks.is_empty() && self.network.backend != "loopback" {
            return Err(bad(
                "attacks".into(),
                "attackers run in process on the loopback backend; set network.backend = \"loopback\"".into(),
            ));
        }
        let mut taken: Vec<(String, String)> = Vec::new();
        for (k, a) in self.attacks.iter().enumerate() {
            let key = |field: &str| format!("attacks[{k}].{field}");
            if !a.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(bad(key("name"), format!("{:?}: use letters, digits, - and _", a.name)));
            }
            if self.attacks[..k].iter().any(|o| o.name == a.name) {
                return Err(bad(key("name"), format!("{:?} names two attackers", a.name)));
            }
            if a.certificate.is_some() && a.attack != AttackKind::FakeMx {
                return Err(bad(
                    key("certificate"),
                    format!("only a fake-mx presents a certificate; {} never terminates TLS itself", a.attack.name()),
                ));
            }
            if a.domains.is_empty() && a.links.is_empty() && a.domain_share.is_none() {
                return Err(bad(
                    key("attack"),
                    "give the targets: domains = [\"beta.example\"], links = [[\"alpha\", \"beta\"]] and/or \
                     domain_share = 0.25"
                        .into(),
                ));
            }
            for (i, d) in a.domains.iter().enumerate() {
                if !self.systems.iter().any(|s| s.domain.eq_ignore_ascii_case(d)) {
                    return Err(bad(format!("attacks[{k}].domains[{i}]"), format!("no system has the domain {d:?}")));
                }
            }
            for (i, [from, to]) in a.links.iter().enumerate() {
                for n in [from, to] {
                    if !self.systems.iter().any(|s| &s.name == n) {
                        return Err(bad(format!("attacks[{k}].links[{i}]"), format!("no system named {n:?}")));
                    }
                }
                if from == to {
                    return Err(bad(
                        format!("attacks[{k}].links[{i}]"),
                        "a link joins two different systems: [sender, receiver]".into(),
                    ));
                }
            }
            if !(a.start >= 0.0 && a.start.is_finite()) {
                return Err(bad(key("start"), format!("{}: seconds after traffic starts, >= 0", a.start)));
            }
            if !(0.0..=1.0).contains(&a.share) {
                return Err(bad(key("share"), format!("{}: a share of sessions between 0 and 1", a.share)));
            }
            let domains = self.intercepted_domains(k);
            if domains.len() > 254 {
                return Err(bad(key("domains"), "at most 254 intercepted domains per attacker".into()));
            }
            for d in domains {
                if let Some((_, other)) = taken.iter().find(|(t, _)| t.eq_ignore_ascii_case(&d)) {
                    return Err(bad(
                        key("domains"),
                        format!("{d} is already intercepted by {other}: DNS sends a domain to one attacker"),
                    ));
                }
                taken.push((d, a.name.clone()));
            }
        }
        let own: Vec<Ipv4Addr> = (0..self.systems.len()).map(|i| self.address(i)).collect();
        for (d, k, addr) in self.interceptions() {
            if own.contains(&addr) || self.dns_server().is_some_and(|dns| dns.ip() == std::net::IpAddr::V4(addr)) {
                return Err(bad(
                    format!("attacks[{k}]"),
                    format!("the attacker's address for {d}, {addr}, is a system's or the DNS server's; move that one"),
                ));
            }
        }
        Ok(())
    }

    fn validate(&self, path: &str) -> Result<(), ScenarioError> {
        let bad = |key: &str, message: String| ScenarioError::Invalid {
            path: path.to_string(),
            key: key.to_string(),
            message,
        };
        if self.systems.len() < 2 {
            return Err(bad("systems", "a scenario needs at least two [[systems]] for mail to cross a line".into()));
        }
        let name = &self.scenario.name;
        if name.is_empty()
            || name.starts_with('.')
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(bad(
                "scenario.name",
                format!(
                    "{name:?}: the name becomes a directory name, so use letters, digits, '.', '_' and '-', not \
                     starting with '.' (e.g. \"baseline-2\")"
                ),
            ));
        }
        if self.scenario.drain_timeout > MAX_DRAIN_SECS {
            return Err(bad("scenario.drain_timeout", "seconds, at most 604800 (a week)".into()));
        }
        if self.systems.len() > MAX_SYSTEMS {
            return Err(bad("systems", "at most 50,800 systems on the loopback backend".into()));
        }
        for (i, s) in self.systems.iter().enumerate() {
            let key = format!("systems[{i}]");
            if s.name.is_empty() || !s.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(bad(&format!("{key}.name"), format!("{:?}: use letters, digits, - and _", s.name)));
            }
            if !s.domain.contains('.') {
                return Err(bad(
                    &format!("{key}.domain"),
                    format!("{:?} is not a domain name (e.g. alpha.example)", s.domain),
                ));
            }
            if self.systems[..i].iter().any(|o| o.name == s.name || o.domain == s.domain) {
                return Err(bad(&key, format!("name {:?} or domain {:?} is used twice", s.name, s.domain)));
            }
            self.validate_dane(i, path)?;
            if !s.starttls && (s.inbound() != InboundTls::None || s.outbound() != OutboundTls::None) {
                return Err(bad(
                    &format!("{key}.starttls"),
                    "a system without STARTTLS cannot have a TLS policy other than none; set starttls = true".into(),
                ));
            }
            if let Err(e) = s.tls.check() {
                return Err(bad(&format!("{key}.tls.{}", e.list()), e.to_string()));
            }
            if let Err(e) = s.delivery.check() {
                return Err(bad(&format!("{key}.delivery.{}", e.field()), e.to_string()));
            }
            if s.delivery != relay::DeliveryOptions::default() && self.uses_netns_addresses() {
                return Err(bad(
                    &format!("{key}.delivery"),
                    "delivery options reach in-process relays only: use the loopback backend".into(),
                ));
            }
            if !self.address(i).is_loopback() && self.network.backend == "loopback" {
                return Err(bad(&format!("{key}.address"), "the loopback backend needs 127.x.y.z addresses".into()));
            }
            if s.address.is_some() && self.uses_netns_addresses() {
                return Err(bad(
                    &format!("{key}.address"),
                    "the netns and shadow backends assign addresses themselves (10.233.0.0/16)".into(),
                ));
            }
        }
        if !matches!(self.network.backend.as_str(), "loopback" | "netns" | "shadow") {
            return Err(bad(
                "network.backend",
                format!("{:?}: use \"loopback\", \"netns\" or \"shadow\"", self.network.backend),
            ));
        }
        let n = &self.network;
        if n.backend == "loopback" && (n.delay_ms != 0.0 || n.loss_percent != 0.0) {
            return Err(bad(
                "network.delay_ms",
                "delay and loss need the netns backend (netem on veth links) or the shadow backend".into(),
            ));
        }
        if !(n.delay_ms >= 0.0 && (0.0..=100.0).contains(&n.loss_percent)) {
            return Err(bad("network.delay_ms", "delay_ms >= 0 and loss_percent between 0 and 100".into()));
        }
        if !matches!(n.dns.as_str(), "in-process" | "server") {
            return Err(bad("network.dns", format!("{:?}: use \"in-process\" or \"server\"", n.dns)));
        }
        if n.backend == "shadow" && n.loss_percent != 0.0 {
            return Err(bad(
                "network.loss_percent",
                "the shadow backend cannot lose packets: Shadow's Rust TCP stack, the one whose pcaps number bytes \
                 (see SCENARIOS.md), does not retransmit yet, so a lost segment stalls its connection; set \
                 loss_percent = 0, or use the netns backend for loss"
                    .into(),
            ));
        }
        if n.backend == "shadow" && self.traffic.requiretls_share > 0.0 {
            return Err(bad(
                "traffic.requiretls_share",
                "the shadow backend's injector submits without TLS, and REQUIRETLS needs TLS on submission: set \
                 requiretls_share = 0, or use the loopback backend"
                    .into(),
            ));
        }
        if n.backend == "shadow" && n.dns == "server" {
            return Err(bad(
                "network.dns",
                "the shadow backend runs no DNS server process yet: use dns = \"in-process\" (relays get every \
                 system's MX as a route)"
                    .into(),
            ));
        }
        if let Some(dns) = self.dns_server() {
            if n.backend == "netns" && n.dns_address.is_some_and(|a| a != crate::netns::ROOT_ADDR) {
                return Err(bad(
                    "network.dns_address",
                    format!(
                        "the netns backend's DNS server is on the bridge, {}: leave it out",
                        crate::netns::ROOT_ADDR
                    ),
                ));
            }
            if n.backend == "loopback" && !dns.ip().is_loopback() {
                return Err(bad("network.dns_address", "the loopback backend needs a 127.x.y.z address".into()));
            }
            if (0..self.systems.len()).any(|i| std::net::IpAddr::V4(self.address(i)) == dns.ip()) {
                return Err(bad(
                    "network.dns_address",
                    format!("{} is a system's address; give the DNS server its own", dns.ip()),
                ));
            }
            if dns.port() == 0 || n.dns_ttl == 0 {
                return Err(bad("network.dns_port", "dns_port and dns_ttl must be at least 1".into()));
            }
        }
        if !matches!(self.tap.links.as_str(), "all" | "pairs" | "fraction") {
            return Err(bad("tap.links", format!("{:?}: use \"all\", \"pairs\" or \"fraction\"", self.tap.links)));
        }
        for (i, [a, b]) in self.tap.pairs.iter().enumerate() {
            for n in [a, b] {
                if !self.systems.iter().any(|s| &s.name == n) {
                    return Err(bad(&format!("tap.pairs[{i}]"), format!("no system named {n:?}")));
                }
            }
        }
        if !(0.0..=1.0).contains(&self.tap.fraction) {
            return Err(bad("tap.fraction", "a share between 0 and 1".into()));
        }
        if !(0.0..=1.0).contains(&self.tap.access_share) {
            return Err(bad("tap.access_share", "a share between 0 and 1".into()));
        }
        if self.tap.access_share > 0.0 {
            if self.network.backend != "loopback" || self.tap.capture != "live" {
                return Err(bad(
                    "tap.access_share",
                    "access taps need the loopback backend and the live capture (users submit from 127.x.y.z \
                     addresses of their own)"
                        .into(),
                ));
            }
            let users = self.systems.iter().map(|s| s.users.unwrap_or(self.traffic.users_per_system)).sum::<usize>();
            let first = u32::from(self.tap.access_addresses);
            let last = u32::try_from(users).ok().and_then(|n| first.checked_add(n.saturating_sub(1)));
            let own: std::collections::HashSet<Ipv4Addr> = (0..self.systems.len()).map(|i| self.address(i)).collect();
            let clash = last.and_then(|last| (first..=last).map(Ipv4Addr::from).find(|a| own.contains(a)));
            if self.tap.access_addresses.octets()[0] != 127 || last.is_none_or(|l| Ipv4Addr::from(l).octets()[0] != 127)
            {
                return Err(bad(
                    "tap.access_addresses",
                    format!(
                        "{users} users from {} leave 127.0.0.0/8: choose a lower first address",
                        self.tap.access_addresses
                    ),
                ));
            }
            if let Some(a) = clash {
                return Err(bad(
                    "tap.access_addresses",
                    format!("{a} is a system's address: the users' addresses must be their own"),
                ));
            }
        }
        if !matches!(self.tap.capture.as_str(), "live" | "recorder" | "none") {
            return Err(bad("tap.capture", format!("{:?}: use \"live\", \"recorder\" or \"none\"", self.tap.capture)));
        }
        if self.tap.capture == "recorder"
            && (self.network.backend != "loopback"
                || self.network.smtp_port.checked_add(2).is_none_or(|p| p == self.network.submission_port))
        {
            return Err(bad(
                "tap.capture",
                "the recorder needs the loopback backend and smtp_port + 2 free (not the submission port)".into(),
            ));
        }
        let t = &self.traffic;
        if t.messages == Some(0) || t.users_per_system == 0 || t.max_recipients == 0 {
            return Err(bad("traffic", "messages, users_per_system and max_recipients must be at least 1".into()));
        }
        if t.messages.is_some_and(|m| m > MAX_MESSAGES) {
            return Err(bad(
                "traffic.messages",
                "at most 10,000,000 messages in one run; split a larger study into a sweep over seeds".into(),
            ));
        }
        if t.max_recipients > MAX_RECIPIENTS {
            return Err(bad("traffic.max_recipients", "at most 1000 recipients per message".into()));
        }
        let users =
            self.systems.iter().map(|s| s.users.unwrap_or(t.users_per_system)).fold(0usize, usize::saturating_add);
        if users == 0 {
            return Err(bad(
                "traffic.users_per_system",
                "no system has a user to send mail: give some system users >= 1 (or leave users out)".into(),
            ));
        }
        if users > MAX_USERS {
            return Err(bad(
                "traffic.users_per_system",
                format!("{users} users in all; at most 10,000,000 in one run (lower users or users_per_system)"),
            ));
        }
        // Arrival times become Durations: a tiny rate would put them beyond what a clock holds.
        if !(t.rate == 0.0 || (MIN_RATE..=MAX_RATE).contains(&t.rate)) {
            return Err(bad(
                "traffic.rate",
                "messages per second: 0 (as fast as possible) or between 0.000001 and 1e9".into(),
            ));
        }
        if let Some(d) = t.duration {
            if t.messages.is_some() {
                return Err(bad(
                    "traffic.duration",
                    "give either messages (a count) or duration (seconds of arrivals), not both".into(),
                ));
            }
            if !(d > 0.0 && d.is_finite()) {
                return Err(bad("traffic.duration", format!("{d}: seconds of traffic, > 0")));
            }
            if t.rate == 0.0 {
                return Err(bad(
                    "traffic.duration",
                    "a duration needs Poisson arrivals: set traffic.rate (messages per second) > 0".into(),
                ));
            }
            // Every load loop bounded: the generator stops at the duration, and this bounds that.
            if d * t.rate > MAX_EXPECTED_MESSAGES {
                return Err(bad(
                    "traffic.duration",
                    format!(
                        "rate × duration = {:.0} expected messages; at most {MAX_EXPECTED_MESSAGES:.0}",
                        d * t.rate
                    ),
                ));
            }
        }
        if !(0.0..=1.0).contains(&t.attachment_probability) || t.attachment_median < 1.0 {
            return Err(bad(
                "traffic.attachment_probability",
                "a probability between 0 and 1, attachment_median >= 1".into(),
            ));
        }
        if !matches!(t.correspondents.as_str(), "uniform" | "zipf")
            || t.zipf_exponent.is_nan()
            || t.zipf_exponent <= 0.0
        {
            return Err(bad("traffic.correspondents", "\"uniform\" or \"zipf\" (with zipf_exponent > 0)".into()));
        }
        if !(0.0..=1.0).contains(&t.requiretls_share) {
            return Err(bad("traffic.requiretls_share", "a share between 0 and 1".into()));
        }
        if !(0.0..=1.0).contains(&t.intra_system_share) {
            return Err(bad("traffic.intra_system_share", "a share between 0 and 1".into()));
        }
        if !(t.size_median >= 1.0 && t.size_sigma >= 0.0 && t.size_sigma.is_finite()) {
            return Err(bad("traffic.size_median", "size_median >= 1 byte and a finite size_sigma >= 0".into()));
        }
        Ok(())
    }
}

/// The policy a system publishes. Only `mode` is required.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// `enforce`, `testing` or `none`.
    pub mode: Mode,
    /// Seconds a sender may cache the policy (at most 31557600); default one day.
    #[serde(default = "default_max_age")]
    pub max_age: u64,
    /// MX patterns (`mx.d.example`, `*.d.example`); default the system's own MX host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mx: Vec<String>,
    /// The policy id in the TXT record: 1 to 32 letters and digits; default `1`.
    #[serde(default = "default_id")]
    pub id: String,
    /// Serve this text instead of the policy the keys above make (to measure what senders do
    /// with a malformed policy); not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The response's Content-Type; default `text/plain` (anything else is no policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

fn default_max_age() -> u64 {
    86_400
}

fn default_id() -> String {
    "1".into()
}

impl PolicySpec {
    /// The policy file served for a system whose MX host is `mx_host`.
    pub fn text(&self, mx_host: &str) -> String {
        if let Some(body) = &self.body {
            return body.clone();
        }
        let mut t = format!("version: STSv1\r\nmode: {}\r\n", self.mode.name());
        if self.mx.is_empty() {
            t.push_str(&format!("mx: {mx_host}\r\n"));
        }
        for m in &self.mx {
            t.push_str(&format!("mx: {m}\r\n"));
        }
        t.push_str(&format!("max_age: {}\r\n", self.max_age));
        t
    }

    pub fn content_type(&self) -> &str {
        self.content_type.as_deref().unwrap_or("text/plain")
    }
}

/// What an attacker does to a policy fetch it intercepts after its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FetchBlock {
    /// Accepts the connection and closes it at once (`sts-policy-fetch-error`).
    Drop,
    /// Answers the TLS handshake with a self-signed certificate for `mta-sts.<domain>`
    /// (`sts-webpki-invalid`).
    SelfSigned,
}

impl FetchBlock {
    pub fn name(self) -> &'static str {
        match self {
            FetchBlock::Drop => "drop",
            FetchBlock::SelfSigned => "self-signed",
        }
    }
}

/// Checks the MTA-STS keys of a parsed scenario; errors name the key (its line is added by
/// [`Scenario::parse`]).
fn validate_mta_sts(s: &Scenario, path: &str) -> Result<(), ScenarioError> {
    let bad = |key: String, message: String| ScenarioError::Invalid { path: path.to_string(), key, message };
    let uses = s.systems.iter().any(|sys| sys.mta_sts || sys.mta_sts_policy.is_some())
        || s.attacks.iter().any(|a| a.policy_fetch.is_some());
    if !uses {
        return Ok(());
    }
    let first = s
        .systems
        .iter()
        .position(|sys| sys.mta_sts || sys.mta_sts_policy.is_some())
        .map(|i| format!("systems[{i}].{}", if s.systems[i].mta_sts { "mta_sts" } else { "mta_sts_policy" }))
        .unwrap_or_else(|| "attacks".into());
    if s.dns_server().is_none() {
        return Err(bad(
            first,
            "MTA-STS is found through DNS (TXT and A records): set network.dns = \"server\"".into(),
        ));
    }
    if s.network.backend != "loopback" {
        return Err(bad(first, "MTA-STS runs on the loopback backend only; set network.backend = \"loopback\"".into()));
    }
    let n = &s.network;
    let taken = [n.smtp_port, n.submission_port, n.smtp_port.saturating_add(2)];
    if n.https_port == 0 || taken.contains(&n.https_port) {
        return Err(bad(
            "network.https_port".into(),
            format!(
                "{}: the policy servers need a port of their own (not SMTP's, submission's or the recorder's)",
                n.https_port
            ),
        ));
    }
    for (i, sys) in s.systems.iter().enumerate() {
        if sys.mta_sts && !sys.starttls {
            return Err(bad(
                format!("systems[{i}].mta_sts"),
                "MTA-STS requires TLS, and this system has no STARTTLS: set starttls = true".into(),
            ));
        }
        let Some(p) = &sys.mta_sts_policy else { continue };
        let key = |k: &str| format!("systems[{i}].mta_sts_policy.{k}");
        if p.id.is_empty() || p.id.len() > 32 || !p.id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(bad(key("id"), format!("{:?}: 1 to 32 letters and digits (RFC 8461 §3.1)", p.id)));
        }
        if p.body.is_some() {
            continue;
        }
        if p.max_age > relay::mta_sts::MAX_AGE_LIMIT {
            return Err(bad(
                key("max_age"),
                format!("{}: seconds, at most {} (RFC 8461 §3.2)", p.max_age, relay::mta_sts::MAX_AGE_LIMIT),
            ));
        }
        if let Err(e) = Policy::parse(p.text(&sys.mx_host()).as_bytes()) {
            return Err(bad(key("mx"), format!("the policy would be invalid: {}", e.message)));
        }
    }
    for (k, a) in s.attacks.iter().enumerate() {
        if a.policy_fetch.is_none() {
            continue;
        }
        let publishes = s
            .intercepted_domains(k)
            .iter()
            .any(|d| s.systems.iter().any(|sys| sys.domain.eq_ignore_ascii_case(d) && sys.mta_sts_policy.is_some()));
        if !publishes {
            return Err(bad(
                format!("attacks[{k}].policy_fetch"),
                "none of the attacker's domains publishes an MTA-STS policy (systems[i].mta_sts_policy)".into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_parses() {
        let s = Scenario::parse(crate::DEFAULT_SCENARIO, "default.toml").expect("valid");
        assert_eq!(s.systems.len(), 3);
        assert_eq!(s.address(2), Ipv4Addr::new(127, 0, 3, 1));
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let text = crate::DEFAULT_SCENARIO.replace("max_recipients = 3", "max_recipents = 3");
        let e = Scenario::parse(&text, "x.toml").expect_err("typo").to_string();
        assert!(e.starts_with("x.toml: "), "{e}");
        let line = crate::DEFAULT_SCENARIO.lines().position(|l| l.starts_with("max_recipients")).expect("key") + 1;
        assert!(e.contains(&format!("line {line}")) && e.contains("max_recipents"), "{e}");
        let text = crate::DEFAULT_SCENARIO.replace(
            "name = \"gamma\"\ndomain = \"gamma.example\"\nstarttls = false",
            "name = \"gamma\"\ndomain = \"gamma.example\"\nstarttls = false\noutbound_tls = \"may\"",
        );
        let e = Scenario::parse(&text, "x.toml").expect_err("policy without TLS").to_string();
        assert!(e.contains("systems[2].starttls"), "{e}");
    }

    const MIXED: &str = "[scenario]\nname = \"mix\"\nseed = 9\n\n[population]\nproviders = 2\nsystems = 30\n\
                         users = 200\nstarttls_share = 0.6\noutbound_mix = { may = 0.5, encrypt = 0.3, none = 0.15, verify = 0.05 }\n";

    fn policy_counts(s: &Scenario) -> [usize; 4] {
        let mut counts = [0; 4];
        for sys in s.systems.iter().filter(|s| s.starttls) {
            let i = OutboundMix::POLICIES.iter().position(|p| *p == sys.outbound()).expect("policy");
            counts[i] += 1;
        }
        counts
    }

    #[test]
    fn outbound_mix_counts_follow_the_largest_remainder_rule() {
        let s = Scenario::parse(MIXED, "mix.toml").expect("valid");
        // 2 providers + round(0.6 × 30) = 18 small systems with STARTTLS: 20. Exact shares of 20
        // are 3, 10, 6 and 1: no rounding needed.
        assert_eq!(policy_counts(&s), [3, 10, 6, 1], "none, may, encrypt, verify");
        assert!(s.systems.iter().filter(|s| !s.starttls).all(|s| s.outbound() == OutboundTls::None));
        // Rounding: 7 systems × (0.5, 0.3, 0.2) = 3.5, 2.1, 1.4 → floors 3, 2, 1 and the one left
        // over goes to the largest remainder (may, 0.5).
        let mix = OutboundMix::try_from(std::collections::BTreeMap::from([
            ("may".to_string(), 0.5),
            ("encrypt".to_string(), 0.3),
            ("none".to_string(), 0.2),
        ]))
        .expect("valid mix");
        assert_eq!(mix.counts(7), [1, 4, 2, 0]);
        for n in 0..50 {
            let c = mix.counts(n);
            assert_eq!(c.iter().sum::<usize>(), n);
            for (count, share) in c.iter().zip([0.2, 0.5, 0.3, 0.0]) {
                assert!((*count as f64 - share * n as f64).abs() < 1.0, "n {n}: {c:?}");
            }
        }
    }

    #[test]
    fn outbound_mix_is_drawn_from_the_seed_and_leaves_other_draws_alone() {
        let a = Scenario::parse(MIXED, "mix.toml").expect("valid");
        let b = Scenario::parse(MIXED, "mix.toml").expect("valid");
        let policies = |s: &Scenario| s.systems.iter().map(|s| s.outbound()).collect::<Vec<_>>();
        assert_eq!(policies(&a), policies(&b), "same file and seed, same population");
        let other = Scenario::parse(&MIXED.replace("seed = 9", "seed = 10"), "mix.toml").expect("valid");
        assert_eq!(policy_counts(&other), policy_counts(&a), "the counts do not depend on the seed");
        // Without the mix, the same systems have STARTTLS: the mix draws from its own generator.
        let plain = MIXED.lines().filter(|l| !l.starts_with("outbound_mix")).collect::<Vec<_>>().join("\n");
        let plain = Scenario::parse(&plain, "plain.toml").expect("valid");
        let tls = |s: &Scenario| s.systems.iter().map(|s| s.starttls).collect::<Vec<_>>();
        assert_eq!(tls(&plain), tls(&a));
    }

    #[test]
    fn bad_outbound_mix_names_file_line_and_key() {
        let text = MIXED.replace("verify = 0.05", "verify = 0.5");
        let e = Scenario::parse(&text, "mix.toml").expect_err("sum 1.45").to_string();
        let line = text.lines().position(|l| l.starts_with("outbound_mix")).expect("line") + 1;
        assert!(e.starts_with("mix.toml: ") && e.contains(&format!("line {line}")), "{e}");
        assert!(e.contains("outbound_mix") && e.contains("add up to 1.45"), "{e}");
        let e = Scenario::parse(&MIXED.replace("verify =", "verfy ="), "mix.toml").expect_err("typo").to_string();
        assert!(e.contains("unknown policy \"verfy\""), "{e}");
        let both = MIXED.replace("starttls_share = 0.6", "starttls_share = 0.6\noutbound_tls = \"may\"");
        let e = Scenario::parse(&both, "mix.toml").expect_err("both").to_string();
        assert!(e.contains("population.outbound_mix"), "{e}");
    }

    /// Access taps: exactly round(share × users) lines, the same ones for the same seed, each
    /// user at its own address; bad values are errors naming the key and its line.
    #[test]
    fn access_taps_are_seeded_exact_and_checked() {
        let d = crate::DEFAULT_SCENARIO;
        let with = |extra: &str| d.replace("access_lines = false", &format!("access_lines = false\n{extra}"));
        let text = with("access_share = 0.3");
        let s = Scenario::parse(&text, "x.toml").expect("valid");
        let taps = s.access_taps();
        let users: usize = s.systems.iter().map(|x| x.users.unwrap_or(s.traffic.users_per_system)).sum();
        assert_eq!(taps.len(), users);
        assert_eq!(taps.iter().filter(|t| t.1).count(), (0.3 * users as f64).round() as usize);
        assert_eq!(taps[0].0, Ipv4Addr::new(127, 224, 0, 1));
        assert_eq!(taps, Scenario::parse(&text, "x.toml").expect("valid").access_taps(), "seeded");
        assert!(Scenario::parse(d, "x.toml").expect("valid").access_taps().is_empty(), "off by default");
        let line = |t: &str, key: &str| t.lines().position(|l| l.starts_with(key)).expect("line") + 1;
        let bad = with("access_share = 1.5");
        let e = Scenario::parse(&bad, "x.toml").expect_err("share").to_string();
        assert!(e.contains("tap.access_share") && e.contains(&format!("line {}", line(&bad, "access_share"))), "{e}");
        let clash = with("access_share = 1.0\naccess_addresses = \"127.0.1.1\"");
        let e = Scenario::parse(&clash, "x.toml").expect_err("clash").to_string();
        assert!(e.contains("tap.access_addresses") && e.contains("a system's address"), "{e}");
        let out = with("access_share = 1.0\naccess_addresses = \"127.255.255.250\"");
        let e = Scenario::parse(&out, "x.toml").expect_err("range").to_string();
        assert!(e.contains("leave 127.0.0.0/8"), "{e}");
    }

    /// Values that pass the type check but used to panic or exhaust memory in the run: each is
    /// an error naming the file, the key and (where the key is written) its line.
    #[test]
    fn out_of_range_values_are_errors_with_key_and_line() {
        let line_of = |text: &str, start: &str| text.lines().position(|l| l.starts_with(start)).expect("line") + 1;
        let check = |text: &str, key: &str, line: Option<usize>, words: &str| {
            let e = Scenario::parse(text, "x.toml").expect_err(key).to_string();
            assert!(e.starts_with("x.toml: ") && e.contains(key) && e.contains(words), "{e}");
            if let Some(line) = line {
                assert!(e.contains(&format!("(line {line}, column ")), "{e}");
            }
        };
        let d = crate::DEFAULT_SCENARIO;
        let no_users = d.replace("starttls = ", "users = 0\nstarttls = ");
        check(&no_users, "traffic.users_per_system", None, "no system has a user");
        let huge = format!("{d}\n[population]\nsystems = 1000000000000\n");
        check(&huge, "population.systems", None, "at most 50,800");
        let text = d.replace("messages = 300", "messages = 1e15");
        assert!(Scenario::parse(&text, "x.toml").is_err(), "a float is not a count");
        let text = d.replace("messages = 300", "messages = 1000000000000000");
        check(&text, "traffic.messages", Some(line_of(&text, "messages")), "at most 10,000,000");
        let text = d.replace("max_recipients = 3", "max_recipients = 3\nrate = 1e-300");
        check(&text, "traffic.rate", Some(line_of(&text, "rate")), "0.000001");
        for name in ["../escaped", "", ".hidden", "a/b"] {
            let text = d.replacen("name = \"default\"", &format!("name = {name:?}"), 1);
            check(&text, "scenario.name", Some(line_of(&text, "name = ")), "directory name");
        }
        let tls = d.replacen("starttls = true", "starttls = true\ntls = { versions = [\"1.4\"] }", 1);
        check(&tls, "systems[0].tls.versions", Some(line_of(&tls, "tls = ")), "unknown TLS version \"1.4\"");
        let tls = d.replacen("starttls = true", "starttls = true\ntls = { ciphers = [\"TLS_NOPE\"] }", 1);
        check(&tls, "systems[0].tls.ciphers", Some(line_of(&tls, "tls = ")), "available: TLS");
        let tls = d.replacen("starttls = true", "starttls = true\ntls = { groups = [\"X448\"] }", 1);
        check(&tls, "systems[0].tls.groups", Some(line_of(&tls, "tls = ")), "available: X25519");
        let ok =
            d.replacen("starttls = true", "starttls = true\ntls = { versions = [\"1.2\"], groups = [\"x25519\"] }", 1);
        Scenario::parse(&ok, "x.toml").expect("known names pass");
    }

    #[test]
    fn bad_attack_options_name_file_line_and_column() {
        let d = crate::DEFAULT_SCENARIO;
        let with = |attack: &str| format!("{d}\n[[attacks]]\n{attack}\n");
        let line_of = |text: &str, start: &str| {
            text.lines().collect::<Vec<_>>().iter().rposition(|l| l.starts_with(start)).expect("line") + 1
        };
        let check = |attack: &str, key: &str, first: &str, words: &str| {
            let text = with(attack);
            let e = Scenario::parse(&text, "a.toml").expect_err(attack).to_string();
            let line = line_of(&text, first);
            assert!(e.starts_with("a.toml: ") && e.contains(key) && e.contains(words), "{e}");
            assert!(e.contains(&format!("(line {line}, column ")), "{e}");
        };
        check(
            "attack = \"strip\"\ndomains = [\"nobody.example\"]",
            "attacks[0].domains[0]",
            "domains",
            "no system has",
        );
        check(
            "attack = \"strip\"\nlinks = [[\"alpha\", \"zeta\"]]",
            "attacks[0].links[0]",
            "links",
            "no system named \"zeta\"",
        );
        check(
            "attack = \"strip\"\nlinks = [[\"beta\", \"beta\"]]",
            "attacks[0].links[0]",
            "links",
            "two different systems",
        );
        check("attack = \"strip\"", "attacks[0].attack", "attack", "give the targets");
        check(
            "attack = \"454\"\ndomains = [\"beta.example\"]\nshare = 1.5",
            "attacks[0].share",
            "share",
            "between 0 and 1",
        );
        check("attack = \"454\"\ndomains = [\"beta.example\"]\nstart = -1", "attacks[0].start", "start", ">= 0");
        check(
            "attack = \"strip\"\ndomains = [\"beta.example\"]\ncertificate = \"self-signed\"",
            "attacks[0].certificate",
            "certificate",
            "only a fake-mx",
        );
        let two = with(
            "attack = \"strip\"\ndomains = [\"beta.example\"]\n\n[[attacks]]\nattack = \"454\"\nlinks = [[\"alpha\", \"beta\"]]",
        );
        let e = Scenario::parse(&two, "a.toml").expect_err("one domain, two attackers").to_string();
        assert!(e.contains("attacks[1].domains") && e.contains("already intercepted by attacker1"), "{e}");
        // Unknown names are the TOML reader's errors, with line and column too.
        let text = with("attack = \"sslstrip\"\ndomains = [\"beta.example\"]");
        let e = Scenario::parse(&text, "a.toml").expect_err("unknown attack").to_string();
        assert!(e.contains(&format!("line {}", line_of(&text, "attack ="))) && e.contains("strip-xxxxxxxa"), "{e}");
        let text = with("attack = \"fake-mx\"\ndomains = [\"beta.example\"]\ncertificate = \"stolen\"");
        let e = Scenario::parse(&text, "a.toml").expect_err("unknown certificate").to_string();
        assert!(e.contains("compromised-ca"), "{e}");
        let s =
            Scenario::parse(&with("attack = \"fake-mx\"\nlinks = [[\"alpha\", \"gamma\"]]"), "a.toml").expect("valid");
        assert_eq!(s.attacks[0].name, "attacker1");
        assert_eq!(s.interceptions(), vec![("gamma.example".to_string(), 0, Ipv4Addr::new(127, 254, 1, 1))]);
        let e = Scenario::parse(
            &with("attack = \"strip\"\ndomains = [\"beta.example\"]")
                .replace("backend = \"loopback\"", "backend = \"netns\""),
            "a.toml",
        )
        .expect_err("netns")
        .to_string();
        assert!(e.contains("attacks") && e.contains("loopback"), "{e}");
    }

    /// `domain_share`: round(share × domains) targets, nested across shares at one seed, drawn
    /// again from the resolved scenario to the same list, never a domain of an earlier attacker.
    #[test]
    fn domain_share_draws_nested_targets_from_the_seed() {
        // 20 generated systems: 0.25 of them is 5 domains, 0.5 is 10, 0.33 rounds to 7.
        let base = "[scenario]\nname = \"effort\"\nseed = 7\n\n[population]\nsystems = 20\nusers = 40\n\
                    starttls_share = 1.0\n\n[[attacks]]\nattack = \"strip\"\n";
        let parse = |share: &str| {
            Scenario::parse(&format!("{base}domain_share = {share}\n"), "e.toml").expect("valid").attacks[0]
                .domains
                .clone()
        };
        let (quarter, half, third) = (parse("0.25"), parse("0.5"), parse("0.33"));
        assert_eq!((quarter.len(), half.len(), third.len()), (5, 10, 7));
        assert_eq!(&half[..5], &quarter[..], "a larger share adds targets to the smaller one's");
        assert!(parse("0").is_empty(), "share 0: an attacker with no targets, the sweep's baseline");
        let other_seed =
            Scenario::parse(&format!("{base}domain_share = 0.5\n").replace("seed = 7", "seed = 8"), "e.toml")
                .expect("valid");
        assert_ne!(other_seed.attacks[0].domains, half, "another seed draws other domains");
        // The resolved scenario (as a run directory keeps it) draws nothing more, even when its
        // seed is changed afterwards (as `smtplab run --seed` or an older sweep did).
        let resolved = Scenario::parse(&format!("{base}domain_share = 0.5\n"), "e.toml").expect("valid");
        let text = toml::to_string_pretty(&resolved).expect("toml").replace("seed = 7", "seed = 8");
        let again = Scenario::parse_generated(&text, "r.toml").expect("valid");
        assert_eq!(again.attacks[0].domains, half);
        // A second attacker draws among the domains the first left.
        let two = format!("{base}domain_share = 0.5\n\n[[attacks]]\nattack = \"454\"\ndomain_share = 0.5\n");
        let s = Scenario::parse(&two, "e.toml").expect("valid");
        assert_eq!((s.attacks[0].domains.len(), s.attacks[1].domains.len()), (10, 10));
        assert!(s.attacks[1].domains.iter().all(|d| !s.attacks[0].domains.contains(d)));
        let e = Scenario::parse(&format!("{base}domain_share = 1.5\n"), "e.toml").expect_err("1.5").to_string();
        assert!(e.contains("attacks[0].domain_share") && e.contains("line 12") && e.contains("between 0 and 1"), "{e}");
    }

    #[test]
    fn injection_attacks_parse_and_an_unknown_name_says_where() {
        let d = crate::DEFAULT_SCENARIO;
        let with = |attack: &str| format!("{d}\n[[attacks]]\n{attack}\ndomains = [\"beta.example\"]\n");
        for (name, kind) in
            [("inject-command", AttackKind::InjectCommand), ("inject-response", AttackKind::InjectResponse)]
        {
            let s = Scenario::parse(&with(&format!("attack = \"{name}\"")), "i.toml").expect(name);
            assert_eq!((s.attacks[0].attack, kind.name(), kind.injects()), (kind, name, true));
            assert_eq!(s.attacks[0].certificate, None);
            // The resolved scenario (the run's scenario.toml and manifest) writes the same name.
            assert!(toml::to_string(&s).expect("serializable").contains(&format!("attack = \"{name}\"")));
            let text = with(&format!("attack = \"{name}\"\ncertificate = \"self-signed\""));
            let e = Scenario::parse(&text, "i.toml").expect_err("no certificate").to_string();
            assert!(e.contains("attacks[0].certificate") && e.contains("never terminates TLS itself"), "{e}");
        }
        assert!(!AttackKind::FakeMx.injects() && !AttackKind::Strip.injects());
        let text = with("attack = \"inject-commands\"");
        let line = text.lines().position(|l| l.starts_with("attack =")).expect("line") + 1;
        let e = Scenario::parse(&text, "i.toml").expect_err("unknown attack").to_string();
        assert!(e.starts_with("i.toml") && e.contains(&format!("line {line}")), "{e}");
        assert!(
            e.contains("inject-commands") && e.contains("`inject-command`") && e.contains("`inject-response`"),
            "{e}"
        );
    }

    #[test]
    fn dns_server_address_defaults_and_checks() {
        let text = crate::DEFAULT_SCENARIO.replace("[network]", "[network]\ndns = \"server\"");
        let s = Scenario::parse(&text, "d.toml").expect("valid");
        assert_eq!(s.dns_server(), Some("127.0.1.53:53".parse().expect("addr")));
        let e = Scenario::parse(&text.replace("dns = \"server\"", "dns = \"sever\""), "d.toml")
            .expect_err("typo")
            .to_string();
        assert!(e.contains("network.dns") && e.contains("in-process"), "{e}");
        let clash = text.replace("dns = \"server\"", "dns = \"server\"\ndns_address = \"127.0.2.1\"");
        let e = Scenario::parse(&clash, "d.toml").expect_err("a system's address").to_string();
        assert!(e.contains("network.dns_address"), "{e}");
    }

    #[test]
    fn traffic_is_a_count_or_a_duration() {
        let with = |extra: &str| crate::DEFAULT_SCENARIO.replace("[traffic]\n", &format!("[traffic]\n{extra}\n"));
        assert!(crate::DEFAULT_SCENARIO.contains("[traffic]\n"), "the default scenario has a [traffic] table");
        let e = Scenario::parse(&with("duration = 60\nrate = 5.0"), "x.toml").expect_err("both").to_string();
        assert!(e.contains("traffic.duration") && e.contains("not both"), "{e}");
        let text = with("duration = 60").replace("messages = 300\n", "");
        let e = Scenario::parse(&text, "x.toml").expect_err("no rate").to_string();
        assert!(e.contains("traffic.rate"), "{e}");
        let e = Scenario::parse(&text.replace("duration = 60", "duration = -1\nrate = 2.0"), "x.toml")
            .expect_err("negative")
            .to_string();
        assert!(e.contains("traffic.duration"), "{e}");
        let s = Scenario::parse(&text.replace("duration = 60", "duration = 60\nrate = 2.0"), "x.toml").expect("valid");
        assert_eq!((s.traffic.duration, s.traffic.messages), (Some(60.0), None));
        // Neither: the default count, written out in the resolved scenario.
        let s = Scenario::parse(&crate::DEFAULT_SCENARIO.replace("messages = 300\n", ""), "x.toml").expect("valid");
        assert_eq!(s.traffic.messages, Some(300));
    }
}
