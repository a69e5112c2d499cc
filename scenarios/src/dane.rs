//! DANE in scenarios (RFC 7672): what each system's zone publishes. Per system, `dnssec` says
//! whether the scenario's DNS server signs its zone, and `dane` which TLSA record it publishes at
//! `_25._tcp.mx.<domain>`; the record's data comes from the certificates made for the run.
//! The relays' side (`dane`, `dane-only` policies) is `relay::dane`.

use relay::dane::Tlsa;
use serde::{Deserialize, Serialize};

use crate::error::{PkiError, ScenarioError};

/// DNSSEC of one system's zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "DnssecText", into = "DnssecText")]
pub enum Dnssec {
    /// `false` (the default): an insecure delegation; resolvers can prove it is unsigned.
    #[default]
    Unsigned,
    /// `true`: signed, with a DS record in the signed root vouching for its key.
    Signed,
    /// `"bogus"`: signed with a key the root's DS does not vouch for; every answer fails
    /// validation, as forged answers would.
    Bogus,
}

/// How `dnssec` is written: `true`, `false` or `"bogus"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum DnssecText {
    Flag(bool),
    Mode(String),
}

impl TryFrom<DnssecText> for Dnssec {
    type Error = String;
    fn try_from(t: DnssecText) -> Result<Self, String> {
        match t {
            DnssecText::Flag(false) => Ok(Dnssec::Unsigned),
            DnssecText::Flag(true) => Ok(Dnssec::Signed),
            DnssecText::Mode(m) if m == "bogus" => Ok(Dnssec::Bogus),
            DnssecText::Mode(m) => Err(format!("dnssec = {m:?}: use true, false or \"bogus\"")),
        }
    }
}

impl From<Dnssec> for DnssecText {
    fn from(d: Dnssec) -> Self {
        match d {
            Dnssec::Unsigned => DnssecText::Flag(false),
            Dnssec::Signed => DnssecText::Flag(true),
            Dnssec::Bogus => DnssecText::Mode("bogus".into()),
        }
    }
}

/// The TLSA record a system's MX publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DaneRecord {
    /// `"none"` (the default): no TLSA record.
    #[default]
    None,
    /// `"3 1 1"`: DANE-EE, SHA-256 of the MX certificate's public key.
    EndEntity,
    /// `"2 1 1"`: DANE-TA, SHA-256 of the scenario CA's public key (the CA's certificate is in
    /// every MX's chain).
    TrustAnchor,
}

impl TryFrom<String> for DaneRecord {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        match words.as_slice() {
            ["none"] => Ok(DaneRecord::None),
            ["3", "1", "1"] => Ok(DaneRecord::EndEntity),
            ["2", "1", "1"] => Ok(DaneRecord::TrustAnchor),
            _ => Err(format!(
                "dane = {text:?}: publish \"3 1 1\" (DANE-EE: the MX key's SHA-256), \"2 1 1\" (DANE-TA: the \
                 scenario CA key's SHA-256) or \"none\"; the record's data is made from the run's certificates"
            )),
        }
    }
}

impl From<DaneRecord> for String {
    fn from(d: DaneRecord) -> String {
        match d {
            DaneRecord::None => "none",
            DaneRecord::EndEntity => "3 1 1",
            DaneRecord::TrustAnchor => "2 1 1",
        }
        .into()
    }
}

/// The TLSA record for a system's MX: from its certificate chain (PEM, the MX certificate first,
/// the CA's last).
pub fn tlsa_for(record: DaneRecord, chain_pem: &str) -> Result<Option<Tlsa>, ScenarioError> {
    let ders = pem_certificates(chain_pem)?;
    let (usage, der) = match record {
        DaneRecord::None => return Ok(None),
        DaneRecord::EndEntity => (3, ders.first()),
        DaneRecord::TrustAnchor => (2, ders.last()),
    };
    let der = der.ok_or(PkiError::NoCertificate)?;
    Tlsa::spki_sha256(usage, der).map(Some).map_err(|e| PkiError::Tlsa(e).into())
}

fn pem_certificates(pem: &str) -> Result<Vec<Vec<u8>>, ScenarioError> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| PkiError::Pem(e).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate block that holds no X.509 certificate: the TLSA error keeps the parser's
    /// reason as its source.
    #[test]
    fn a_chain_without_x509_is_a_tlsa_error_with_its_reason() {
        // base64 of "not a certificate".
        let pem = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
        let e = tlsa_for(DaneRecord::EndEntity, pem).expect_err("not X.509");
        let text = e.to_string();
        match e {
            ScenarioError::Pki(PkiError::Tlsa(source)) => {
                assert!(std::error::Error::source(&source).is_some(), "the parser's reason");
            }
            other => panic!("expected a TLSA error, got {other}"),
        }
        assert!(text.starts_with("TLSA record: not an X.509 certificate: "), "{text}");
        assert!(matches!(tlsa_for(DaneRecord::None, pem), Ok(None)));
    }
}
