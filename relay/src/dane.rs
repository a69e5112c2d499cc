//! DANE for SMTP (RFC 7672): the outbound policies `dane` and `dane-only`, as Postfix names them.
//!
//! Before connecting to an MX host, the relay looks up `_25._tcp.<host> TLSA` through its wire
//! resolver with DNSSEC validation against the scenario's trust anchor
//! ([`crate::dns::DnsResolver::with_trust_anchor`]). What it finds decides the session, exactly
//! as RFC 7672 §2.2 says:
//!
//! | TLSA answer | `dane` | `dane-only` |
//! |---|---|---|
//! | insecure (unsigned zone) or no TLSA at all | opportunistic, as `may` | defer (`dane-required`) |
//! | bogus (validation failed) or lookup failed | defer | defer |
//! | secure, no usable record | TLS required, certificate not checked | same |
//! | secure, usable records | TLS required, certificate must match one | same |
//!
//! Usable records are DANE-TA(2) and DANE-EE(3), any selector (0 certificate, 1 SPKI) and
//! matching type (0 exact, 1 SHA-256, 2 SHA-512); PKIX-TA(0) and PKIX-EE(1) are unusable for
//! SMTP (RFC 7672 §3.1.3). DANE-EE checks neither name nor expiry (§3.1.1); DANE-TA requires the
//! trust anchor's certificate in the server's chain, and checks the chain, its validity and the
//! MX host name below it (§3.1.2).
//!
//! Simplification: only the TLSA RRset is validated, not the MX and address RRsets before it
//! (§2.2.1–2.2.2). In smtplab's zones the MX, the MX host's address and its TLSA record live in
//! one zone, signed together or not at all, so the TLSA RRset is secure exactly when they are.

use std::sync::{Arc, Mutex};

// RFC 8460's result type, from the records it is written into (not from `crate::tlsrpt`,
// which re-exports it and files sessions under this module's policies).
use records::tlsrpt::ResultType;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::Digest;

/// The port in the TLSA owner name: SMTP between MXs is port 25 (RFC 7672 §2.2.3), whatever
/// port a lab runs its relays on.
pub const TLSA_PORT: u16 = 25;

/// One TLSA record (RFC 6698 §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlsa {
    /// Certificate usage: 2 DANE-TA, 3 DANE-EE (0 and 1 are unusable for SMTP).
    pub usage: u8,
    /// 0: the whole certificate; 1: its SubjectPublicKeyInfo.
    pub selector: u8,
    /// 0: exact; 1: SHA-256; 2: SHA-512.
    pub matching: u8,
    pub data: Vec<u8>,
}

impl Tlsa {
    /// Whether RFC 7672 lets an SMTP client use this record (§3.1.3, and a digest of the right
    /// length: a truncated one can match nothing and is unusable, not a mismatch).
    pub fn usable(&self) -> bool {
        matches!(self.usage, 2 | 3)
            && matches!(self.selector, 0 | 1)
            && match self.matching {
                0 => !self.data.is_empty(),
                1 => self.data.len() == 32,
                2 => self.data.len() == 64,
                _ => false,
            }
    }

    /// Whether the certificate `der` matches the record's selector, matching type and data.
    /// A certificate that cannot be parsed matches nothing.
    pub fn matches(&self, der: &[u8]) -> bool {
        let Some(selected) = select(der, self.selector) else { return false };
        match self.matching {
            0 => selected == self.data,
            1 => sha2::Sha256::digest(&selected).as_slice() == self.data.as_slice(),
            2 => sha2::Sha512::digest(&selected).as_slice() == self.data.as_slice(),
            _ => false,
        }
    }

    /// The record `usage 1 1` for a certificate: what a zone publishes for it (`3 1 1` for the
    /// server's own certificate, `2 1 1` for its issuer).
    pub fn spki_sha256(usage: u8, der: &[u8]) -> Result<Tlsa, NotACertificate> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| NotACertificate(e.into()))?;
        let spki = cert.tbs_certificate.subject_pki.raw;
        Ok(Tlsa { usage, selector: 1, matching: 1, data: sha2::Sha256::digest(spki).to_vec() })
    }

    /// Presentation format, `3 1 1 <hex>`.
    pub fn to_text(&self) -> String {
        format!("{} {} {} {}", self.usage, self.selector, self.matching, hex::encode(&self.data))
    }
}

/// The bytes a TLSA record was to be made from are not an X.509 certificate; the source is
/// the parser's reason.
#[derive(Debug, thiserror::Error)]
#[error("not an X.509 certificate: {0}")]
pub struct NotACertificate(#[source] pub x509_parser::error::X509Error);

/// What the validated TLSA lookup of one MX host found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsaAnswer {
    /// No DNSSEC-secure TLSA RRset: the zone is unsigned (insecure), the resolver validates
    /// nothing, or the host publishes no TLSA. No DANE for this host.
    NotSecure,
    /// A DNSSEC-secure TLSA RRset (possibly with no usable record).
    Secure(Vec<Tlsa>),
}

/// How a session to one MX host must go, decided before connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DanePlan {
    /// No DANE protection: opportunistic TLS, as `may` (policy `dane` only).
    Opportunistic,
    /// Secure TLSA RRset without a usable record: TLS required, certificate not authenticated
    /// (RFC 7672 §2.2: "the SMTP client MUST use TLS ... but need not authenticate").
    EncryptOnly,
    /// TLS required, and the certificate must match one of these usable records.
    Authenticate(Vec<Tlsa>),
}

impl DanePlan {
    /// RFC 7672 §2.2's outcomes for an answer; `only`: the policy is `dane-only`.
    pub fn decide(host: &str, answer: TlsaAnswer, only: bool) -> Result<DanePlan, DaneFailure> {
        match answer {
            TlsaAnswer::NotSecure if only => Err(DaneFailure::DaneRequired { host: host.into() }),
            TlsaAnswer::NotSecure => Ok(DanePlan::Opportunistic),
            TlsaAnswer::Secure(records) => {
                let usable: Vec<Tlsa> = records.into_iter().filter(Tlsa::usable).collect();
                Ok(if usable.is_empty() { DanePlan::EncryptOnly } else { DanePlan::Authenticate(usable) })
            }
        }
    }
}

/// A client config for one DANE session: the relay's own (versions, suites, key log) with the
/// certificate checked against `records`, and where the verifier leaves a refusal's reason.
pub fn client_config(
    base: &Arc<ClientConfig>,
    host: &str,
    records: &[Tlsa],
) -> (Arc<ClientConfig>, Arc<Mutex<Option<DaneFailure>>>) {
    let verifier = DaneVerifier::new(host, records.to_vec(), base.crypto_provider().clone());
    let slot = verifier.failure_slot();
    let mut config = (**base).clone();
    config.dangerous().set_certificate_verifier(Arc::new(verifier));
    // No resumption: a ticket from an unauthenticated session (a `may` one, maybe with an
    // attacker) must never stand in for the TLSA check.
    config.resumption = rustls::client::Resumption::disabled();
    (Arc::new(config), slot)
}

/// Why DANE made a delivery wait. [`DaneFailure::result_type`] is the RFC 8460 result type a
/// TLS-RPT report files it under.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DaneFailure {
    /// The TLSA answer (or its denial) failed DNSSEC validation: bogus (RFC 7672 §2.2: defer).
    #[error("DANE: TLSA lookup of {host} is DNSSEC-bogus: {why}")]
    DnssecInvalid { host: String, why: String },
    /// The TLSA lookup got no answer (timeout, SERVFAIL): its security is unknown, so defer.
    #[error("DANE: TLSA lookup of {host} failed: {why}")]
    LookupFailed { host: String, why: String },
    /// `dane-only` and the host has no DNSSEC-secure TLSA RRset.
    #[error("DANE: {host} has no DNSSEC-secure TLSA records and the policy is dane-only")]
    DaneRequired { host: String },
    /// DANE requires TLS and the server did not offer or refused STARTTLS.
    #[error("DANE: {host} did not offer STARTTLS ({why}), which its TLSA records require")]
    StarttlsNotSupported { host: String, why: String },
    /// No usable TLSA record matches the certificate chain the server presented.
    #[error("DANE: no TLSA record of {host} matches its certificate ({why})")]
    TlsaMismatch { host: String, why: String },
    /// A DANE-TA record matched an issuer in the chain, but the chain below it does not name
    /// the MX host (or is otherwise invalid).
    #[error("DANE: {host}'s chain matches its DANE-TA record but fails below it: {why}")]
    TrustAnchorChain {
        host: String,
        why: String,
        /// The chain is valid but does not name the MX host.
        wrong_name: bool,
    },
}

impl DaneFailure {
    /// The RFC 8460 §4.3 result type, which TLS-RPT files under the `tlsa` policy.
    pub fn tlsrpt_result(&self) -> ResultType {
        match self {
            DaneFailure::DnssecInvalid { .. } => ResultType::DnssecInvalid,
            DaneFailure::LookupFailed { .. } => ResultType::ValidationFailure,
            DaneFailure::DaneRequired { .. } => ResultType::DaneRequired,
            DaneFailure::StarttlsNotSupported { .. } => ResultType::StarttlsNotSupported,
            // RFC 8460: "None of the records in the RRset were found to be valid."
            DaneFailure::TlsaMismatch { .. } => ResultType::TlsaInvalid,
            DaneFailure::TrustAnchorChain { wrong_name: true, .. } => ResultType::CertificateHostMismatch,
            DaneFailure::TrustAnchorChain { wrong_name: false, .. } => ResultType::ValidationFailure,
        }
    }

    /// The result type's name, as session records keep it (`dane_failure`).
    pub fn result_type(&self) -> &'static str {
        self.tlsrpt_result().as_str()
    }
}

/// Checks the server's certificate against the host's usable TLSA records, and its handshake
/// signature as any verifier does. On a mismatch it keeps the typed failure for the session to
/// record (rustls only carries a string through the handshake).
#[derive(Debug)]
pub struct DaneVerifier {
    host: String,
    records: Vec<Tlsa>,
    provider: Arc<CryptoProvider>,
    failure: Arc<Mutex<Option<DaneFailure>>>,
}

impl DaneVerifier {
    pub fn new(host: &str, records: Vec<Tlsa>, provider: Arc<CryptoProvider>) -> Self {
        Self { host: host.into(), records, provider, failure: Default::default() }
    }

    /// Where the failure of a handshake lands; read it after a failed handshake.
    pub fn failure_slot(&self) -> Arc<Mutex<Option<DaneFailure>>> {
        self.failure.clone()
    }

    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), DaneFailure> {
        // DANE-EE: the key (or certificate) is the server's; name and dates do not matter.
        if self.records.iter().any(|r| r.usage == 3 && r.matches(end_entity)) {
            return Ok(());
        }
        // DANE-TA: an issuer in the chain the server sent is the trust anchor; the chain from it
        // to the end entity must be valid for the MX host.
        let mut chain_error = None;
        for (i, ta) in intermediates.iter().enumerate() {
            if !self.records.iter().any(|r| r.usage == 2 && r.matches(ta)) {
                continue;
            }
            match self.verify_below(ta, end_entity, &intermediates[..i], server_name, now) {
                Ok(()) => return Ok(()),
                Err(e) => chain_error = Some(e),
            }
        }
        Err(match chain_error {
            Some(e) => DaneFailure::TrustAnchorChain {
                host: self.host.clone(),
                why: e.to_string(),
                wrong_name: matches!(
                    e,
                    rustls::Error::InvalidCertificate(
                        rustls::CertificateError::NotValidForName
                            | rustls::CertificateError::NotValidForNameContext { .. }
                    )
                ),
            },
            None => DaneFailure::TlsaMismatch {
                host: self.host.clone(),
                why: format!(
                    "{} certificate(s) presented, records {}",
                    1 + intermediates.len(),
                    self.records.iter().map(Tlsa::to_text).collect::<Vec<_>>().join(", ")
                ),
            },
        })
    }

    fn verify_below(
        &self,
        ta: &CertificateDer<'_>,
        end_entity: &CertificateDer<'_>,
        between: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let mut roots = RootCertStore::empty();
        roots.add(ta.clone().into_owned())?;
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(format!("DANE-TA verifier: {e}")))?;
        webpki.verify_server_cert(end_entity, between, server_name, &[], now).map(|_| ())
    }
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.check(end_entity, intermediates, server_name, now) {
            Ok(()) => Ok(ServerCertVerified::assertion()),
            Err(f) => {
                let text = f.to_string();
                if let Ok(mut slot) = self.failure.lock() {
                    *slot = Some(f);
                }
                Err(rustls::Error::General(text))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The bytes a selector picks from a certificate: all of it, or its SubjectPublicKeyInfo.
fn select(der: &[u8], selector: u8) -> Option<Vec<u8>> {
    match selector {
        0 => Some(der.to_vec()),
        1 => {
            let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
            Some(cert.tbs_certificate.subject_pki.raw.to_vec())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(usage: u8, selector: u8, matching: u8, len: usize) -> Tlsa {
        Tlsa { usage, selector, matching, data: vec![0xab; len] }
    }

    #[test]
    fn usable_records_are_dane_ta_and_dane_ee_with_digests_of_the_right_length() {
        assert!(rec(3, 1, 1, 32).usable());
        assert!(rec(2, 1, 1, 32).usable());
        assert!(rec(3, 0, 2, 64).usable());
        assert!(!rec(1, 1, 1, 32).usable(), "PKIX-EE is unusable for SMTP");
        assert!(!rec(0, 1, 1, 32).usable(), "PKIX-TA is unusable for SMTP");
        assert!(!rec(3, 1, 1, 31).usable(), "a truncated SHA-256");
        assert!(!rec(3, 2, 1, 32).usable(), "unknown selector");
        assert!(!rec(3, 1, 3, 32).usable(), "unknown matching type");
    }

    /// A CA and a leaf for `host` it issued, valid until `not_after` (year): DER each.
    fn chain(host: &str, not_after: i32) -> (Vec<u8>, Vec<u8>) {
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name.push(rcgen::DnType::CommonName, "dane test CA");
        let ca_key = rcgen::KeyPair::generate().expect("ca key");
        let ca_cert = ca.self_signed(&ca_key).expect("ca");
        let mut leaf = rcgen::CertificateParams::new(vec![host.to_string()]).expect("leaf params");
        leaf.not_before = rcgen::date_time_ymd(2000, 1, 1);
        leaf.not_after = rcgen::date_time_ymd(not_after, 1, 1);
        let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
        let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).expect("leaf");
        (ca_cert.der().to_vec(), leaf_cert.der().to_vec())
    }

    fn verify(records: Vec<Tlsa>, leaf: &[u8], intermediates: &[&[u8]], name: &str) -> Result<(), DaneFailure> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let v = DaneVerifier::new(name, records, provider);
        let intermediates: Vec<CertificateDer<'_>> = intermediates.iter().map(|d| CertificateDer::from(*d)).collect();
        let name = ServerName::try_from(name.to_string()).expect("name");
        let result = v.verify_server_cert(&CertificateDer::from(leaf), &intermediates, &name, &[], UnixTime::now());
        let slot = v.failure_slot();
        let failure = slot.lock().expect("slot").take();
        match (result, failure) {
            (Ok(_), None) => Ok(()),
            (Err(_), Some(f)) => Err(f),
            other => panic!("verifier result and recorded failure disagree: {other:?}"),
        }
    }

    /// The `3 1 1` data as the usual recipe makes it with OpenSSL (RFC 7671 §5.1 practice:
    /// `openssl x509 -pubkey | openssl pkey -pubin -outform DER | sha256`), from outside this code.
    fn openssl_3_1_1(der: &[u8]) -> Vec<u8> {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let run = |args: &[&str], input: &[u8]| {
            let mut child = Command::new("openssl")
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("openssl must be installed for this test (Debian package openssl, in TEST_PACKAGES)");
            child.stdin.take().expect("stdin").write_all(input).expect("write to openssl");
            let out = child.wait_with_output().expect("openssl ran");
            assert!(out.status.success(), "openssl {args:?} failed");
            out.stdout
        };
        let pubkey_pem = run(&["x509", "-inform", "DER", "-pubkey", "-noout"], der);
        let spki = run(&["pkey", "-pubin", "-outform", "DER"], &pubkey_pem);
        run(&["dgst", "-sha256", "-binary"], &spki)
    }

    #[test]
    fn spki_sha256_matches_openssl() {
        let (ca, leaf) = chain("mx.d.example", 2999);
        for der in [&ca, &leaf] {
            let t = Tlsa::spki_sha256(3, der).expect("certificate");
            assert_eq!(t.data, openssl_3_1_1(der));
            assert!(t.usable() && t.matches(der));
        }
        assert!(!Tlsa::spki_sha256(3, &leaf).expect("leaf").matches(&ca));
        let e = Tlsa::spki_sha256(3, b"not DER").expect_err("not a certificate");
        assert!(e.to_string().starts_with("not an X.509 certificate: "), "{e}");
        assert!(std::error::Error::source(&e).is_some(), "the parser's reason is the source");
    }

    /// DANE-EE ignores the name and the dates (RFC 7672 §3.1.1); DANE-TA checks both below the
    /// anchor, which must be in the chain the server sent (§3.1.2).
    #[test]
    fn dane_ee_ignores_name_and_expiry_dane_ta_checks_the_chain() {
        let (ca, leaf) = chain("mx.d.example", 2001);
        let ee = Tlsa::spki_sha256(3, &leaf).expect("leaf");
        assert_eq!(verify(vec![ee.clone()], &leaf, &[], "another.example"), Ok(()), "expired, other name: fine");
        let (ca2, fresh) = chain("mx.d.example", 2999);
        let ta = Tlsa::spki_sha256(2, &ca2).expect("ca");
        assert_eq!(verify(vec![ta.clone()], &fresh, &[&ca2], "mx.d.example"), Ok(()));
        let wrong_name = verify(vec![ta.clone()], &fresh, &[&ca2], "mx.other.example").expect_err("name");
        assert_eq!(wrong_name.result_type(), "certificate-host-mismatch", "{wrong_name}");
        let expired = verify(vec![Tlsa::spki_sha256(2, &ca).expect("ca")], &leaf, &[&ca], "mx.d.example")
            .expect_err("the leaf expired in 2001");
        assert_eq!(expired.result_type(), "validation-failure", "{expired}");
        let absent = verify(vec![ta], &fresh, &[], "mx.d.example").expect_err("anchor not in the chain");
        assert_eq!(absent.result_type(), "tlsa-invalid", "{absent}");
        // A self-signed certificate (a fake MX) matches neither record.
        let (_, other) = chain("mx.d.example", 2999);
        let fake = verify(vec![ee, Tlsa::spki_sha256(2, &ca2).expect("ca")], &other, &[], "mx.d.example");
        assert_eq!(fake.map_err(|e| e.result_type()), Err("tlsa-invalid"));
    }

    /// RFC 7672 §2.2's table, row by row.
    #[test]
    fn plans_follow_rfc_7672() {
        let h = "mx.d.example";
        assert_eq!(DanePlan::decide(h, TlsaAnswer::NotSecure, false), Ok(DanePlan::Opportunistic));
        assert_eq!(DanePlan::decide(h, TlsaAnswer::NotSecure, true).map_err(|e| e.result_type()), Err("dane-required"));
        assert_eq!(DanePlan::decide(h, TlsaAnswer::Secure(vec![rec(1, 1, 1, 32)]), false), Ok(DanePlan::EncryptOnly));
        assert_eq!(DanePlan::decide(h, TlsaAnswer::Secure(vec![]), true), Ok(DanePlan::EncryptOnly));
        assert_eq!(
            DanePlan::decide(h, TlsaAnswer::Secure(vec![rec(1, 1, 1, 32), rec(3, 1, 1, 32)]), false),
            Ok(DanePlan::Authenticate(vec![rec(3, 1, 1, 32)]))
        );
    }
}
