//! A scenario-local certificate authority, made fresh for each run with rcgen, and one
//! certificate per STARTTLS system naming its MX host.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

use crate::error::{PkiError, ScenarioError};

pub struct Pki {
    pub ca_pem: String,
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
}

fn err(e: rcgen::Error) -> ScenarioError {
    PkiError::Generate(e).into()
}

impl Pki {
    pub fn new(scenario: &str) -> Result<Self, ScenarioError> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("smtplab {scenario} CA"));
        let ca_key = KeyPair::generate().map_err(err)?;
        let ca_cert = params.self_signed(&ca_key).map_err(err)?;
        Ok(Self { ca_pem: ca_cert.pem(), ca_cert, ca_key })
    }

    /// A certificate for `host`, signed by the CA: (chain PEM, key PEM).
    pub fn issue(&self, host: &str) -> Result<(String, String), ScenarioError> {
        let mut params = CertificateParams::new(vec![host.to_string()]).map_err(err)?;
        params.distinguished_name.push(DnType::CommonName, host);
        let key = KeyPair::generate().map_err(err)?;
        let cert = params.signed_by(&key, &self.ca_cert, &self.ca_key).map_err(err)?;
        Ok((format!("{}{}", cert.pem(), self.ca_pem), key.serialize_pem()))
    }

    /// A self-signed certificate for `host`, trusted by nobody: (certificate PEM, key PEM).
    pub fn self_signed(host: &str) -> Result<(String, String), ScenarioError> {
        let mut params = CertificateParams::new(vec![host.to_string()]).map_err(err)?;
        params.distinguished_name.push(DnType::CommonName, host);
        let key = KeyPair::generate().map_err(err)?;
        let cert = params.self_signed(&key).map_err(err)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    pub fn write_ca(&self, dir: &Path) -> Result<(), ScenarioError> {
        std::fs::write(dir.join("ca.pem"), &self.ca_pem).map_err(ScenarioError::io(format!("{}/ca.pem", dir.display())))
    }
}
