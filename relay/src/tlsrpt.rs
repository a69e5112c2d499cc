//! TLS-RPT (RFC 8460): the sending relay's aggregate of its outbound TLS sessions, per policy
//! domain (the recipient domain), written at shutdown as one JSON report per domain into
//! `tlsrpt/` beside the relay's records file (`<records dir>/tlsrpt/<policy-domain>.json`; a
//! scenario run gathers them into `tlsrpt/<system>/`). The report's schema is
//! [`records::tlsrpt::Report`].
//!
//! Under which policy a session is reported (RFC 8460 §4.4 `policy-type`; the sender's
//! delivery code, `crate::delivery`, picks it per MX host before connecting):
//! - [`tlsa`]: the sender does DANE (`dane`, `dane-only`) and used the MX host's DNSSEC-secure
//!   TLSA RRset (usable records or not: RFC 7672 §2.2 makes TLS mandatory either way). The
//!   `policy-string` is the RRset in presentation form (`3 1 1 <hex>`), `mx-host` the MX host.
//!   DANE's own failures before any RRset could be used (`dnssec-invalid` for a bogus answer,
//!   `dane-required` under `dane-only`, `validation-failure` for a lookup with no answer) are
//!   also filed under `tlsa`, with no `policy-string`: there is no validated RRset to show.
//! - [`sts`]: no DANE RRset, and an MTA-STS policy in force (fetched or cached) in mode
//!   `enforce` or `testing`. The `policy-string` is the policy's lines, `mx-host` its MX patterns
//!   (RFC 8460 §4.4). Mode `none` is no policy (RFC 8461 §5).
//! - [`no_policy_found`]: neither; the sender applied its own policy (`may`, `encrypt`,
//!   `verify`, REQUIRETLS). A message with `TLS-Required: No` goes as `may` whatever the
//!   recipient publishes (RFC 8689 §3, §4.2.2; `crate::requiretls`), so it is reported here too.
//!
//! Which sessions count, and how (one session, one count, as RFC 8460 counts sessions):
//! - a sender with policy `none` records nothing;
//! - a failure the sender's policy noticed is a failure, with its result type: no STARTTLS
//!   offered or STARTTLS refused (`starttls-not-supported`) under `encrypt`, `verify`, DANE,
//!   MTA-STS `enforce` or REQUIRETLS; a certificate refused under `verify` or `enforce`
//!   (`certificate-not-trusted`, `-host-mismatch`, `-expired`); DANE's refusals
//!   (`tlsa-invalid`, `dnssec-invalid`, `dane-required`, ...); a handshake that failed
//!   otherwise (`validation-failure`, under any policy: the session could not go on); an MX
//!   host that matches no `mx` pattern of an `enforce` policy, refused without connecting
//!   (`validation-failure`);
//! - under an MTA-STS policy in `testing` mode, what would have failed under `enforce` is a
//!   failure although the mail went on (RFC 8461 §5: testing is for reports);
//! - a failure to get the MTA-STS policy a domain's TXT record announces
//!   (`sts-policy-fetch-error`, `sts-policy-invalid`, `sts-webpki-invalid`, RFC 8460 §4.3.2.2)
//!   is the session's failure when nothing else failed it: under `sts` when a cached policy is
//!   still in force (RFC 8461 §5.1), under `no-policy-found` when none is. So an attacker who
//!   blocks the first fetch still shows in the victim domain's reports;
//! - a `may` sender that fell back to plaintext did not notice anything and records nothing,
//!   unless the recipient domain publishes a policy in force ([`counts_plaintext`]:
//!   `tlsa` or `sts`), whose failure (`starttls-not-supported`) it then reports against that
//!   policy. So a stripping attacker against a `may` sender with no published policy goes
//!   unreported, as it would in the wild;
//! - a TLS session that met the check of the policy it is reported under is a success;
//! - a session that failed before any TLS result for reasons that are not TLS (a TCP connection
//!   refused, a greeting or EHLO refused, a reply injected behind the `220` to STARTTLS) is not
//!   counted.
//!
//! The DANE code types its refusals ([`crate::dane::DaneFailure::tlsrpt_result`]) and the
//! MTA-STS code its failures ([`crate::mta_sts::StsFailure::tlsrpt_result`], kept in the
//! session record's `mta_sts_failure`); `crate::delivery` files them through
//! [`TlsReporter::success`] and [`TlsReporter::failure`] under the [`Policy`] it picked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use records::tlsrpt::{DateRange, PolicyReport, Summary};
pub use records::tlsrpt::{FailureDetails, Policy, PolicyType, Report, ResultType};

/// Whether a plaintext fallback of an opportunistic sender is a failure to report: only when
/// the recipient domain published a policy that asked for TLS.
pub fn counts_plaintext(policy: PolicyType) -> bool {
    policy != PolicyType::NoPolicyFound
}

/// The policy a relay applied with its own settings, for the MX host it tried.
pub fn no_policy_found(domain: &str, mx_host: &str) -> Policy {
    Policy {
        policy_type: PolicyType::NoPolicyFound,
        policy_string: Vec::new(),
        policy_domain: crate::domain::normalize_domain(domain),
        mx_host: vec![mx_host.to_string()],
    }
}

/// DANE for mail to `domain` through `mx_host`: its DNSSEC-secure TLSA RRset in presentation
/// form (`3 1 1 <hex>`), empty when DANE failed before it had one.
pub fn tlsa(domain: &str, mx_host: &str, rrset: &[crate::dane::Tlsa]) -> Policy {
    Policy {
        policy_type: PolicyType::Tlsa,
        policy_string: rrset.iter().map(crate::dane::Tlsa::to_text).collect(),
        policy_domain: crate::domain::normalize_domain(domain),
        mx_host: vec![mx_host.to_string()],
    }
}

/// `domain`'s MTA-STS policy in force: its lines, and its MX patterns as `mx-host`
/// (RFC 8460 §4.4: "the pattern of MX hostnames from the applied policy").
pub fn sts(domain: &str, policy: &crate::mta_sts::Policy) -> Policy {
    Policy {
        policy_type: PolicyType::Sts,
        policy_string: policy.lines(),
        policy_domain: crate::domain::normalize_domain(domain),
        mx_host: policy.mx.clone(),
    }
}

/// The result type of a failed TLS handshake, from the error rustls gave (inside the
/// `io::Error` tokio-rustls returns).
pub fn handshake_result(error: &std::io::Error) -> ResultType {
    use rustls::CertificateError as C;
    let Some(rustls::Error::InvalidCertificate(cert)) = error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return ResultType::ValidationFailure;
    };
    match cert {
        C::NotValidForName | C::NotValidForNameContext { .. } => ResultType::CertificateHostMismatch,
        C::Expired | C::ExpiredContext { .. } => ResultType::CertificateExpired,
        C::UnknownIssuer | C::BadSignature | C::Revoked | C::UnknownRevocationStatus => {
            ResultType::CertificateNotTrusted
        }
        _ => ResultType::ValidationFailure,
    }
}

/// Counts of one policy.
#[derive(Default)]
struct Tally {
    successes: u64,
    failures: BTreeMap<FailureDetails, u64>,
}

/// One relay's aggregate, shared by its delivery tasks.
pub struct TlsReporter {
    /// `organization-name`: the sending system.
    organization: String,
    /// `contact-info`.
    contact: String,
    started: time::OffsetDateTime,
    by_domain: Mutex<BTreeMap<String, BTreeMap<Policy, Tally>>>,
}

impl TlsReporter {
    pub fn new(organization: &str, contact: &str) -> Self {
        Self {
            organization: organization.to_string(),
            contact: contact.to_string(),
            started: time::OffsetDateTime::now_utc(),
            by_domain: Mutex::new(BTreeMap::new()),
        }
    }

    /// A session that negotiated TLS as `policy` asks.
    pub fn success(&self, policy: &Policy) {
        let mut m = self.by_domain.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(policy.policy_domain.clone()).or_default().entry(policy.clone()).or_default().successes += 1;
    }

    /// A session that failed `policy`; `failure.failed_session_count` is ignored (one session).
    pub fn failure(&self, policy: &Policy, failure: FailureDetails) {
        let key = FailureDetails { failed_session_count: 0, ..failure };
        let mut m = self.by_domain.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(policy.policy_domain.clone())
            .or_default()
            .entry(policy.clone())
            .or_default()
            .failures
            .entry(key)
            .or_default() += 1;
    }

    /// One report per policy domain seen so far, covering the relay's life until `end`.
    pub fn reports(&self, end: time::OffsetDateTime) -> Vec<Report> {
        let m = self.by_domain.lock().unwrap_or_else(|p| p.into_inner());
        let range = DateRange { start_datetime: rfc3339(self.started), end_datetime: rfc3339(end) };
        m.iter()
            .map(|(domain, policies)| Report {
                organization_name: self.organization.clone(),
                date_range: range.clone(),
                contact_info: self.contact.clone(),
                report_id: format!("{}_{domain}@{}", range.start_datetime, self.organization),
                policies: policies
                    .iter()
                    .map(|(policy, t)| PolicyReport {
                        policy: policy.clone(),
                        summary: Summary {
                            total_successful_session_count: t.successes,
                            total_failure_session_count: t.failures.values().sum(),
                        },
                        failure_details: t
                            .failures
                            .iter()
                            .map(|(f, n)| FailureDetails { failed_session_count: *n, ..f.clone() })
                            .collect(),
                    })
                    .collect(),
            })
            .collect()
    }

    /// Writes every report as `<dir>/<policy-domain>.json` (owner-only, never through a
    /// link); returns the files written.
    pub fn write(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        let reports = self.reports(time::OffsetDateTime::now_utc());
        if reports.is_empty() {
            return Ok(Vec::new());
        }
        crate::files::create_private_dir_all(dir)?;
        let mut written = Vec::new();
        for r in reports {
            let Some(domain) = r.policies.first().map(|p| p.policy.policy_domain.clone()) else { continue };
            // A domain is a file name only when it cannot climb out of the directory.
            if domain.is_empty() || domain.contains(['/', '\\']) || domain.starts_with('.') {
                tracing::warn!("TLS-RPT: no report file for the policy domain {domain:?}");
                continue;
            }
            let path = dir.join(format!("{domain}.json"));
            let json = serde_json::to_vec_pretty(&r).map_err(std::io::Error::other)?;
            crate::files::write_durably(&path, &json)?;
            written.push(path);
        }
        Ok(written)
    }
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC).replace_nanosecond(0).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(result_type: ResultType, ip: &str) -> FailureDetails {
        FailureDetails {
            result_type,
            sending_mta_ip: Some("127.0.1.1".into()),
            receiving_mx_hostname: Some("mx.b.example".into()),
            receiving_mx_helo: None,
            receiving_ip: Some(ip.into()),
            failed_session_count: 0,
            additional_information: None,
            failure_reason_code: None,
        }
    }

    /// Two successes and three failures of two kinds to one domain, one success to another:
    /// two reports with counts worked by hand.
    #[test]
    fn aggregates_per_domain_policy_and_failure() {
        let r = TlsReporter::new("alpha", "tlsrpt@alpha.example");
        let b = no_policy_found("B.Example.", "mx.b.example");
        assert_eq!(b.policy_domain, "b.example");
        r.success(&b);
        r.success(&b);
        r.failure(&b, detail(ResultType::StarttlsNotSupported, "127.0.9.1"));
        r.failure(
            &b,
            FailureDetails { failed_session_count: 99, ..detail(ResultType::StarttlsNotSupported, "127.0.9.1") },
        );
        r.failure(&b, detail(ResultType::CertificateNotTrusted, "127.0.9.1"));
        r.success(&no_policy_found("c.example", "mx.c.example"));
        let reports = r.reports(time::OffsetDateTime::now_utc());
        assert_eq!(reports.len(), 2);
        let p = &reports[0].policies[0];
        assert_eq!(p.policy.policy_domain, "b.example");
        assert_eq!((p.summary.total_successful_session_count, p.summary.total_failure_session_count), (2, 3));
        let counts: Vec<(ResultType, u64)> =
            p.failure_details.iter().map(|f| (f.result_type, f.failed_session_count)).collect();
        assert_eq!(counts, [(ResultType::StarttlsNotSupported, 2), (ResultType::CertificateNotTrusted, 1)]);
        assert!(reports[1].policies[0].failure_details.is_empty());
        assert!(reports[0].date_range.start_datetime.ends_with('Z'), "{:?}", reports[0].date_range);
        assert!(!counts_plaintext(PolicyType::NoPolicyFound) && counts_plaintext(PolicyType::Sts));
    }

    /// The `policy` objects of the three policy types as RFC 8460 §4.4 spells them, written out
    /// by hand: `tlsa` with the RRset in presentation form and the MX host, `sts` with the
    /// policy's lines and its MX patterns as `mx-host`, `no-policy-found` without a string.
    #[test]
    fn policies_of_each_type_as_the_rfc_spells_them() {
        let rrset = [
            crate::dane::Tlsa { usage: 3, selector: 1, matching: 1, data: vec![0xab; 32] },
            crate::dane::Tlsa { usage: 2, selector: 0, matching: 2, data: vec![0x01; 64] },
        ];
        let tlsa = serde_json::to_value(tlsa("B.Example.", "mx.b.example", &rrset)).expect("json");
        assert_eq!(
            tlsa,
            serde_json::json!({
                "policy-type": "tlsa",
                "policy-string": [format!("3 1 1 {}", "ab".repeat(32)), format!("2 0 2 {}", "01".repeat(64))],
                "policy-domain": "b.example",
                "mx-host": ["mx.b.example"],
            })
        );
        let no_rrset = serde_json::to_value(super::tlsa("b.example", "mx.b.example", &[])).expect("json");
        assert!(no_rrset.get("policy-string").is_none(), "{no_rrset}");
        let policy = crate::mta_sts::Policy {
            mode: crate::mta_sts::Mode::Testing,
            max_age: 86400,
            mx: vec!["mx.b.example".into(), "*.mail.b.example".into()],
        };
        assert_eq!(
            serde_json::to_value(sts("b.example", &policy)).expect("json"),
            serde_json::json!({
                "policy-type": "sts",
                "policy-string": ["version: STSv1", "mode: testing", "mx: mx.b.example", "mx: *.mail.b.example", "max_age: 86400"],
                "policy-domain": "b.example",
                "mx-host": ["mx.b.example", "*.mail.b.example"],
            })
        );
        assert_eq!(
            serde_json::to_value(no_policy_found("b.example", "mx.b.example")).expect("json"),
            serde_json::json!({"policy-type": "no-policy-found", "policy-domain": "b.example", "mx-host": ["mx.b.example"]})
        );
        assert!(counts_plaintext(PolicyType::Tlsa) && counts_plaintext(PolicyType::Sts));
    }

    #[test]
    fn certificate_errors_map_to_result_types() {
        let io = |e: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let cert = |c: rustls::CertificateError| handshake_result(&io(rustls::Error::InvalidCertificate(c)));
        assert_eq!(cert(rustls::CertificateError::UnknownIssuer), ResultType::CertificateNotTrusted);
        assert_eq!(cert(rustls::CertificateError::NotValidForName), ResultType::CertificateHostMismatch);
        assert_eq!(cert(rustls::CertificateError::Expired), ResultType::CertificateExpired);
        assert_eq!(handshake_result(&io(rustls::Error::DecryptError)), ResultType::ValidationFailure);
        assert_eq!(handshake_result(&std::io::Error::other("eof")), ResultType::ValidationFailure);
    }
}
