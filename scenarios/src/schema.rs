//! The scenario file (TOML). Every key, its default and an example are in SCENARIOS.md.

use std::net::Ipv4Addr;

use relay::{InboundTls, OutboundTls};
use serde::{Deserialize, Serialize};

use crate::error::ScenarioError;

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
    /// Outbound policy of the STARTTLS systems: "may", "encrypt" or "verify".
    pub outbound_tls: OutboundTls,
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
            outbound_tls: OutboundTls::May,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PointInfo {
    pub sweep: String,
    pub point: String,
    pub params: toml::Table,
    pub seed: u64,
}

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
    /// "loopback" (each system on its own 127.x address, in process) or "netns" (root: each
    /// system a relay process in its own network namespace, on a bridge the tap captures).
    pub backend: String,
    pub smtp_port: u16,
    pub submission_port: u16,
    /// netns only: one-way delay added to every system's link (netem), milliseconds.
    pub delay_ms: f64,
    /// netns only: packet loss on every system's link (netem), percent.
    pub loss_percent: f64,
}

impl Default for Network {
    fn default() -> Self {
        Self { backend: "loopback".into(), smtp_port: 2525, submission_port: 2587, delay_ms: 0.0, loss_percent: 0.0 }
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

    /// The paired control: the same scenario and seed with STARTTLS off on every system.
    pub fn plaintext_control(&self) -> Scenario {
        let mut c = self.clone();
        c.scenario.compare_plaintext = false;
        for sys in &mut c.systems {
            sys.starttls = false;
            sys.inbound_tls = Some(InboundTls::None);
            sys.outbound_tls = Some(OutboundTls::None);
        }
        c
    }

    /// Parses and checks a scenario; `path` names the source in errors.
    pub fn parse(text: &str, path: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            path: path.to_string(),
            message: format!("{e}hint: see SCENARIOS.md for every key and its default"),
        })?;
        let mut s = s;
        s.expand_population(path)?;
        s.validate(path)?;
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
        let spec = |name: String, users: usize, starttls: bool| SystemSpec {
            domain: format!("{name}.example"),
            name,
            address: None,
            starttls,
            users: Some(users),
            inbound_tls: None,
            outbound_tls: starttls.then_some(p.outbound_tls),
            tls: Default::default(),
        };
        for i in 0..p.providers {
            let users = provider_users / p.providers + usize::from(i < provider_users % p.providers);
            let starttls = p.providers_starttls || tls_set.contains(&i);
            self.systems.push(spec(format!("p{}", i + 1), users, starttls));
        }
        for i in 0..p.systems {
            let users = (small_users / p.systems.max(1) + usize::from(i < small_users % p.systems.max(1))).max(1);
            self.systems.push(spec(format!("s{:03}", i + 1), users, tls_set.contains(&i)));
        }
        Ok(())
    }

    /// The system's own address: 127.0.N.1 for the N-th system up to 254, then 127.M.N.1.
    pub fn address(&self, index: usize) -> Ipv4Addr {
        if self.network.backend == "netns" {
            return crate::netns::address(index);
        }
        let (hi, lo) = (index / 254, index % 254);
        self.systems[index].address.unwrap_or(Ipv4Addr::new(127, hi as u8, (lo + 1) as u8, 1))
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
        if self.systems.len() > 254 * 200 {
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
            if !s.starttls && (s.inbound() != InboundTls::None || s.outbound() != OutboundTls::None) {
                return Err(bad(
                    &format!("{key}.starttls"),
                    "a system without STARTTLS cannot have a TLS policy other than none; set starttls = true".into(),
                ));
            }
            if !self.address(i).is_loopback() && self.network.backend == "loopback" {
                return Err(bad(&format!("{key}.address"), "the loopback backend needs 127.x.y.z addresses".into()));
            }
            if s.address.is_some() && self.network.backend == "netns" {
                return Err(bad(
                    &format!("{key}.address"),
                    "the netns backend assigns addresses itself (10.233.0.0/16)".into(),
                ));
            }
        }
        if !matches!(self.network.backend.as_str(), "loopback" | "netns") {
            return Err(bad("network.backend", format!("{:?}: use \"loopback\" or \"netns\"", self.network.backend)));
        }
        let n = &self.network;
        if n.backend == "loopback" && (n.delay_ms != 0.0 || n.loss_percent != 0.0) {
            return Err(bad("network.delay_ms", "delay and loss need the netns backend (netem on veth links)".into()));
        }
        if !(n.delay_ms >= 0.0 && (0.0..=100.0).contains(&n.loss_percent)) {
            return Err(bad("network.delay_ms", "delay_ms >= 0 and loss_percent between 0 and 100".into()));
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
        if !(t.rate >= 0.0 && t.rate.is_finite()) {
            return Err(bad("traffic.rate", "messages per second, >= 0 (0: as fast as possible)".into()));
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
        if !(0.0..=1.0).contains(&t.intra_system_share) {
            return Err(bad("traffic.intra_system_share", "a share between 0 and 1".into()));
        }
        if !(t.size_median >= 1.0 && t.size_sigma >= 0.0 && t.size_sigma.is_finite()) {
            return Err(bad("traffic.size_median", "size_median >= 1 byte and a finite size_sigma >= 0".into()));
        }
        Ok(())
    }
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
