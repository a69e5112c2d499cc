//! rustls configuration for both sides of STARTTLS, and the NSS key log.
//!
//! Configs are always built with an explicit crypto provider: with two providers in the
//! dependency graph, rustls' implicit default panics.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use crate::error::RelayError;
/// The TLS settings' and PEM texts' defects, which the relay's error carries.
pub use crate::error::{PemItem, TlsSettingsError};

/// What a relay allows in TLS, so each can be measured: empty lists mean rustls' defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// "1.2" and/or "1.3".
    pub versions: Vec<String>,
    /// IANA names, e.g. "TLS_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384".
    pub ciphers: Vec<String>,
    /// Key-exchange groups, e.g. "X25519", "secp256r1", "secp384r1", and with the aws-lc-rs
    /// provider the post-quantum hybrid "X25519MLKEM768".
    pub groups: Vec<String>,
    /// The crypto library under rustls.
    pub provider: CryptoBackend,
}

/// The crypto library rustls runs on. Both are built in, so a scenario or a bench can set them
/// side by side; see BENCHMARKS.md ("rustls providers") for why aws-lc-rs is the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CryptoBackend {
    /// AWS-LC through aws-lc-rs: the only rustls 0.23 provider with X25519MLKEM768.
    #[default]
    #[serde(rename = "aws-lc-rs")]
    AwsLcRs,
    #[serde(rename = "ring")]
    Ring,
}

impl CryptoBackend {
    /// The provider with every suite and group it has (rustls' defaults).
    pub fn default_provider(self) -> CryptoProvider {
        match self {
            CryptoBackend::AwsLcRs => rustls::crypto::aws_lc_rs::default_provider(),
            CryptoBackend::Ring => rustls::crypto::ring::default_provider(),
        }
    }

    /// "aws-lc-rs" or "ring", as scenarios and the command line name them.
    pub fn name(self) -> &'static str {
        match self {
            CryptoBackend::AwsLcRs => "aws-lc-rs",
            CryptoBackend::Ring => "ring",
        }
    }
}

impl std::str::FromStr for CryptoBackend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "aws-lc-rs" => Ok(CryptoBackend::AwsLcRs),
            "ring" => Ok(CryptoBackend::Ring),
            other => Err(format!("unknown TLS provider {other:?}: use aws-lc-rs or ring")),
        }
    }
}

impl TlsSettings {
    /// The crypto provider restricted to the configured suites and groups.
    fn provider(&self) -> Result<Arc<CryptoProvider>, TlsSettingsError> {
        let mut p = self.provider.default_provider();
        if !self.ciphers.is_empty() {
            let all: Vec<String> = p.cipher_suites.iter().map(|c| cipher_name(*c)).collect();
            p.cipher_suites.retain(|c| self.ciphers.iter().any(|n| n.eq_ignore_ascii_case(&cipher_name(*c))));
            if p.cipher_suites.len() != self.ciphers.len() {
                return Err(TlsSettingsError::UnknownCipher { given: self.ciphers.clone(), available: all });
            }
        }
        if !self.groups.is_empty() {
            let all: Vec<String> = p.kx_groups.iter().map(|g| format!("{:?}", g.name())).collect();
            // The hybrid exists in aws-lc-rs only: say so rather than "unknown".
            if self.provider == CryptoBackend::Ring
                && self.groups.iter().any(|n| n.eq_ignore_ascii_case("X25519MLKEM768"))
            {
                return Err(TlsSettingsError::HybridNeedsAwsLc { ring_has: all });
            }
            p.kx_groups.retain(|g| self.groups.iter().any(|n| n.eq_ignore_ascii_case(&format!("{:?}", g.name()))));
            if p.kx_groups.len() != self.groups.len() {
                return Err(TlsSettingsError::UnknownGroup { given: self.groups.clone(), available: all });
            }
        }
        Ok(Arc::new(p))
    }

    /// Checks the names with the same parsers the relay uses, without starting anything: a
    /// scenario is checked before its run begins. The error names the list at fault
    /// ([`TlsSettingsError::list`]: "versions", "ciphers" or "groups") and says what is available.
    pub fn check(&self) -> Result<(), TlsSettingsError> {
        self.versions()?;
        self.provider()?;
        Ok(())
    }

    fn versions(&self) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, TlsSettingsError> {
        if self.versions.is_empty() {
            return Ok(rustls::DEFAULT_VERSIONS.to_vec());
        }
        self.versions
            .iter()
            .map(|v| match v.trim_start_matches("TLSv").trim_start_matches("tls") {
                "1.2" => Ok(&rustls::version::TLS12),
                "1.3" => Ok(&rustls::version::TLS13),
                other => Err(TlsSettingsError::UnknownVersion { version: other.to_string() }),
            })
            .collect()
    }
}

/// Writes TLS secrets in the NSS key log format, which Wireshark and tshark read
/// (`-o tls.keylog_file:keys.log`).
#[derive(Debug)]
pub struct KeyLogFile(Mutex<std::fs::File>);

impl KeyLogFile {
    /// Opens the key log 0600 and never through a symbolic link: it holds every session's keys.
    pub fn open(path: &Path) -> std::io::Result<Arc<Self>> {
        let f = crate::files::open_private_append(path)?;
        Ok(Arc::new(Self(Mutex::new(f))))
    }
}

impl rustls::KeyLog for KeyLogFile {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let line = format!("{label} {} {}\n", hex::encode(client_random), hex::encode(secret));
        let mut f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(line.as_bytes()) {
            tracing::error!("cannot write key log: {e}");
        }
    }
}

pub fn parse_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, RelayError> {
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut pem.as_bytes()).collect();
    let certs = certs.map_err(|source| RelayError::Pem { item: PemItem::Certificate, source })?;
    if certs.is_empty() {
        return Err(RelayError::NoPem(PemItem::Certificate));
    }
    Ok(certs)
}

fn parse_key(pem: &str) -> Result<PrivateKeyDer<'static>, RelayError> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|source| RelayError::Pem { item: PemItem::PrivateKey, source })?
        .ok_or(RelayError::NoPem(PemItem::PrivateKey))
}

pub fn server_config(
    identity: &crate::TlsIdentity,
    settings: &TlsSettings,
    keylog: Option<Arc<KeyLogFile>>,
) -> Result<Arc<ServerConfig>, RelayError> {
    let mut cfg = ServerConfig::builder_with_provider(settings.provider()?)
        .with_protocol_versions(&settings.versions()?)
        .map_err(RelayError::TlsVersions)?
        .with_no_client_auth()
        .with_single_cert(parse_certs(&identity.cert_chain_pem)?, parse_key(&identity.key_pem)?)
        .map_err(RelayError::TlsIdentity)?;
    if let Some(k) = keylog {
        cfg.key_log = k;
    }
    Ok(Arc::new(cfg))
}

/// Client config for `may` and `encrypt`: any certificate is accepted (the handshake signature
/// is still checked), as opportunistic STARTTLS does.
pub fn client_config_any_cert(
    settings: &TlsSettings,
    keylog: Option<Arc<KeyLogFile>>,
) -> Result<Arc<ClientConfig>, RelayError> {
    let provider = settings.provider()?;
    let mut cfg = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&settings.versions()?)
        .map_err(RelayError::TlsVersions)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    if let Some(k) = keylog {
        cfg.key_log = k;
    }
    Ok(Arc::new(cfg))
}

/// Client config for `verify`: the chain must lead to one of `ca_pem` and name the MX host.
pub fn client_config_verify(
    ca_pem: &str,
    settings: &TlsSettings,
    keylog: Option<Arc<KeyLogFile>>,
) -> Result<Arc<ClientConfig>, RelayError> {
    let mut roots = RootCertStore::empty();
    for c in parse_certs(ca_pem)? {
        roots.add(c).map_err(RelayError::CaCertificate)?;
    }
    let mut cfg = ClientConfig::builder_with_provider(settings.provider()?)
        .with_protocol_versions(&settings.versions()?)
        .map_err(RelayError::TlsVersions)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    if let Some(k) = keylog {
        cfg.key_log = k;
    }
    Ok(Arc::new(cfg))
}

/// "TLSv1.3", as Postfix writes it.
pub fn version_name(v: rustls::ProtocolVersion) -> String {
    match v {
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".into(),
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".into(),
        other => format!("{other:?}"),
    }
}

/// The IANA cipher suite name ("TLS_AES_256_GCM_SHA384"), as OpenSSL and Postfix write it.
pub fn cipher_name(s: rustls::SupportedCipherSuite) -> String {
    let name = s.suite().as_str().map(str::to_string).unwrap_or_else(|| format!("{:?}", s.suite()));
    name.replacen("TLS13_", "TLS_", 1)
}

/// Accepts any server certificate but still checks the handshake signature against its key:
/// what opportunistic STARTTLS (`may`, `encrypt`) does. Public so benches measure the same client.
#[derive(Debug)]
pub struct AcceptAnyCert(pub Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(versions: &[&str], ciphers: &[&str], groups: &[&str], provider: CryptoBackend) -> TlsSettings {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        TlsSettings { versions: strings(versions), ciphers: strings(ciphers), groups: strings(groups), provider }
    }

    /// Each unknown name is its own error, naming its list and what is available.
    #[test]
    fn settings_errors_name_their_list_and_what_is_available() {
        let aws = CryptoBackend::AwsLcRs;
        let e = settings(&["1.4"], &[], &[], aws).check().expect_err("1.4");
        assert_eq!(e, TlsSettingsError::UnknownVersion { version: "1.4".into() });
        assert_eq!((e.list(), e.to_string().as_str()), ("versions", "unknown TLS version \"1.4\": use 1.2 or 1.3"));
        let e = settings(&[], &["TLS_NOPE"], &[], aws).check().expect_err("cipher");
        assert_eq!(e.list(), "ciphers");
        let text = e.to_string();
        assert!(text.starts_with("unknown cipher suite in [\"TLS_NOPE\"]; available: TLS_"), "{text}");
        let e = settings(&[], &[], &["X448"], aws).check().expect_err("group");
        assert_eq!(e.list(), "groups");
        assert!(e.to_string().contains("available: X25519"), "{e}");
        let e = settings(&[], &[], &["X25519MLKEM768"], CryptoBackend::Ring).check().expect_err("hybrid on ring");
        assert!(matches!(e, TlsSettingsError::HybridNeedsAwsLc { .. }) && e.list() == "groups", "{e:?}");
        assert!(e.to_string().contains("drop provider = \"ring\""), "{e}");
        settings(&["1.2"], &[], &["x25519"], aws).check().expect("known names");
        // The relay's own error says it is the TLS configuration.
        let e = RelayError::from(TlsSettingsError::UnknownVersion { version: "1.4".into() });
        assert_eq!(e.to_string(), "TLS configuration: unknown TLS version \"1.4\": use 1.2 or 1.3");
    }

    #[test]
    fn pem_errors_say_which_item() {
        match parse_certs("no PEM here") {
            Err(e @ RelayError::NoPem(PemItem::Certificate)) => {
                assert_eq!(e.to_string(), "TLS configuration: no certificate in PEM");
            }
            other => panic!("{other:?}"),
        }
        match parse_key("") {
            Err(e @ RelayError::NoPem(PemItem::PrivateKey)) => {
                assert_eq!(e.to_string(), "TLS configuration: no private key in PEM");
            }
            other => panic!("{other:?}"),
        }
        // A certificate block whose base64 is broken.
        match parse_certs("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n") {
            Err(e @ RelayError::Pem { item: PemItem::Certificate, .. }) => {
                assert!(e.to_string().starts_with("TLS configuration: bad certificate PEM: "), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }

    /// A key that is not the certificate's: rustls' reason, as the source.
    #[test]
    fn a_key_of_another_certificate_is_an_identity_error() {
        let cert = rcgen::generate_simple_self_signed(vec!["mx.a.example".into()]).expect("cert");
        let other = rcgen::KeyPair::generate().expect("key");
        let identity = crate::TlsIdentity { cert_chain_pem: cert.cert.pem(), key_pem: other.serialize_pem() };
        match server_config(&identity, &TlsSettings::default(), None) {
            Err(e @ RelayError::TlsIdentity(_)) => {
                assert!(e.to_string().starts_with("TLS configuration: the certificate chain and key: "), "{e}");
                assert!(std::error::Error::source(&e).is_some());
            }
            other => panic!("expected an identity error, got {:?}", other.map(|_| ())),
        }
    }
}
