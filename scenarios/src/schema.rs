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
    pub systems: Vec<SystemSpec>,
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
}

fn default_seed() -> u64 {
    1997
}

fn default_drain() -> u64 {
    120
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    pub backend: String,
    pub smtp_port: u16,
    pub submission_port: u16,
}

impl Default for Network {
    fn default() -> Self {
        Self { backend: "loopback".into(), smtp_port: 2525, submission_port: 2587 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Traffic {
    pub messages: usize,
    pub users_per_system: usize,
    /// Median message size in bytes (log-normal).
    pub size_median: f64,
    /// Sigma of the log-normal size distribution.
    pub size_sigma: f64,
    pub max_recipients: usize,
    /// Share of messages whose recipients are all in the sender's own system.
    pub intra_system_share: f64,
}

impl Default for Traffic {
    fn default() -> Self {
        Self {
            messages: 300,
            users_per_system: 10,
            size_median: 4000.0,
            size_sigma: 0.9,
            max_recipients: 3,
            intra_system_share: 0.1,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TapSpec {
    /// `live` (libpcap on `device`) or `none`.
    pub capture: String,
    pub device: String,
    /// Also capture the submission lines (users to their own system).
    pub access_lines: bool,
}

impl Default for TapSpec {
    fn default() -> Self {
        Self { capture: "live".into(), device: "lo".into(), access_lines: false }
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
    /// Parses and checks a scenario; `path` names the source in errors.
    pub fn parse(text: &str, path: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            path: path.to_string(),
            message: format!("{e}hint: see SCENARIOS.md for every key and its default"),
        })?;
        s.validate(path)?;
        Ok(s)
    }

    pub fn address(&self, index: usize) -> Ipv4Addr {
        self.systems[index].address.unwrap_or(Ipv4Addr::new(127, 0, (index + 1) as u8, 1))
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
        if self.systems.len() > 250 {
            return Err(bad("systems", "at most 250 systems on the loopback backend (one 127.0.N.1 each)".into()));
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
        }
        if self.network.backend != "loopback" {
            return Err(bad("network.backend", format!("{:?}: only \"loopback\" exists so far", self.network.backend)));
        }
        if !matches!(self.tap.capture.as_str(), "live" | "none") {
            return Err(bad("tap.capture", format!("{:?}: use \"live\" or \"none\"", self.tap.capture)));
        }
        let t = &self.traffic;
        if t.messages == 0 || t.users_per_system == 0 || t.max_recipients == 0 {
            return Err(bad("traffic", "messages, users_per_system and max_recipients must be at least 1".into()));
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
        assert!(e.contains("line 22") && e.contains("max_recipents"), "{e}");
        let text = crate::DEFAULT_SCENARIO.replace(
            "name = \"gamma\"\ndomain = \"gamma.example\"\nstarttls = false",
            "name = \"gamma\"\ndomain = \"gamma.example\"\nstarttls = false\noutbound_tls = \"may\"",
        );
        let e = Scenario::parse(&text, "x.toml").expect_err("policy without TLS").to_string();
        assert!(e.contains("systems[2].starttls"), "{e}");
    }
}
