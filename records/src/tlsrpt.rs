//! `tlsrpt/<sending system>/<policy domain>.json`: an SMTP TLS report (RFC 8460 §4) as each
//! sending relay writes it at the end of a run, field names and values as the RFC spells them.
//! The relay aggregates (`relay::tlsrpt`); analysis reads these files back.

use serde::{Deserialize, Serialize};

/// RFC 8460 §4.4 `policy-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyType {
    /// DANE (RFC 7672): the policy is the MX host's TLSA records.
    Tlsa,
    /// MTA-STS (RFC 8461): the policy is the domain's STS policy text.
    Sts,
    /// Neither: the sender applied its own policy (this relay's may/encrypt/verify).
    NoPolicyFound,
}

/// RFC 8460 §4.3 result types: why a session failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResultType {
    /// §4.3.1 negotiation failures.
    StarttlsNotSupported,
    CertificateHostMismatch,
    CertificateExpired,
    CertificateNotTrusted,
    ValidationFailure,
    /// §4.3.2 DANE.
    TlsaInvalid,
    DnssecInvalid,
    DaneRequired,
    /// §4.3.3 MTA-STS.
    StsPolicyFetchError,
    StsPolicyInvalid,
    StsWebpkiInvalid,
}

impl ResultType {
    /// Every result type RFC 8460 defines, in its order.
    pub const ALL: [ResultType; 11] = [
        ResultType::StarttlsNotSupported,
        ResultType::CertificateHostMismatch,
        ResultType::CertificateExpired,
        ResultType::CertificateNotTrusted,
        ResultType::ValidationFailure,
        ResultType::TlsaInvalid,
        ResultType::DnssecInvalid,
        ResultType::DaneRequired,
        ResultType::StsPolicyFetchError,
        ResultType::StsPolicyInvalid,
        ResultType::StsWebpkiInvalid,
    ];

    /// The name RFC 8460 §4.3 gives it (its JSON value).
    pub fn as_str(self) -> &'static str {
        match self {
            ResultType::StarttlsNotSupported => "starttls-not-supported",
            ResultType::CertificateHostMismatch => "certificate-host-mismatch",
            ResultType::CertificateExpired => "certificate-expired",
            ResultType::CertificateNotTrusted => "certificate-not-trusted",
            ResultType::ValidationFailure => "validation-failure",
            ResultType::TlsaInvalid => "tlsa-invalid",
            ResultType::DnssecInvalid => "dnssec-invalid",
            ResultType::DaneRequired => "dane-required",
            ResultType::StsPolicyFetchError => "sts-policy-fetch-error",
            ResultType::StsPolicyInvalid => "sts-policy-invalid",
            ResultType::StsWebpkiInvalid => "sts-webpki-invalid",
        }
    }

    /// The result type of an RFC 8460 name (as session records keep it); `None` for any other
    /// text.
    pub fn from_name(name: &str) -> Option<ResultType> {
        ResultType::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// The MTA-STS policy failures (RFC 8460 §4.3.2.2): the policy could not be had, as
    /// opposed to a session that failed it.
    pub fn is_sts_policy_failure(self) -> bool {
        matches!(self, ResultType::StsPolicyFetchError | ResultType::StsPolicyInvalid | ResultType::StsWebpkiInvalid)
    }
}

/// One report: one reporting organisation (the sending system), one policy domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Report {
    pub organization_name: String,
    pub date_range: DateRange,
    pub contact_info: String,
    pub report_id: String,
    pub policies: Vec<PolicyReport>,
}

/// RFC 3339 UTC times, whole seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DateRange {
    pub start_datetime: String,
    pub end_datetime: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyReport {
    pub policy: Policy,
    pub summary: Summary,
    /// Absent when nothing failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failure_details: Vec<FailureDetails>,
}

/// The policy a sender applied. Also the key reports are aggregated by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Policy {
    pub policy_type: PolicyType,
    /// The policy's text (TLSA records, STS policy lines); absent for `no-policy-found`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_string: Vec<String>,
    pub policy_domain: String,
    /// The MX host(s) the policy covers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mx_host: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Summary {
    pub total_successful_session_count: u64,
    pub total_failure_session_count: u64,
}

/// Failed sessions of one kind, to one MX address, from one sending address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FailureDetails {
    pub result_type: ResultType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sending_mta_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_mx_hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_mx_helo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_ip: Option<String>,
    pub failed_session_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_information: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason_code: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every result type spelt as RFC 8460 §4.3 spells it.
    #[test]
    fn result_types_are_the_rfcs_strings() {
        let names: Vec<String> = ResultType::ALL
            .iter()
            .map(|r| serde_json::to_value(r).expect("json").as_str().expect("str").into())
            .collect();
        assert_eq!(
            names,
            [
                "starttls-not-supported",
                "certificate-host-mismatch",
                "certificate-expired",
                "certificate-not-trusted",
                "validation-failure",
                "tlsa-invalid",
                "dnssec-invalid",
                "dane-required",
                "sts-policy-fetch-error",
                "sts-policy-invalid",
                "sts-webpki-invalid",
            ]
        );
        // The hand-written names agree with the JSON ones, and read back.
        for r in ResultType::ALL {
            assert_eq!(serde_json::to_value(r).expect("json"), r.as_str());
            assert_eq!(ResultType::from_name(r.as_str()), Some(r));
        }
        assert_eq!(ResultType::from_name("no-policy-found"), None);
        assert_eq!(ResultType::from_name(""), None);
        let types: Vec<serde_json::Value> = [PolicyType::Tlsa, PolicyType::Sts, PolicyType::NoPolicyFound]
            .iter()
            .map(|p| serde_json::to_value(p).expect("json"))
            .collect();
        assert_eq!(types, ["tlsa", "sts", "no-policy-found"]);
    }
}
