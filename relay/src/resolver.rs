//! MX lookup. A trait, so scenarios resolve from their own map in process (the default) or ask a
//! real DNS server on the wire ([`crate::dns::DnsResolver`]), which an eavesdropper then sees.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

/// Where mail for a domain goes: the MX host name (for SNI, certificate checks and records) and
/// the address to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxTarget {
    pub host: String,
    pub addr: SocketAddr,
    /// The system that owns the MX, when the resolver knows it (scenarios do).
    pub system: Option<String>,
}

/// The answer cannot be had now (a DNS timeout, SERVFAIL, a refused query): mail waits and is
/// retried, as an MTA defers on a temporary DNS failure. Not "the domain does not exist".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemporaryFailure(pub String);

impl std::fmt::Display for TemporaryFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "temporary DNS failure: {}", self.0)
    }
}

/// A lookup in progress. Boxed so the trait stays object safe (relays hold `Arc<dyn MxResolver>`).
pub type Resolving<'a> = Pin<Box<dyn Future<Output = Result<Vec<MxTarget>, TemporaryFailure>> + Send + 'a>>;

/// A TLSA lookup in progress (DANE, [`crate::dane`]).
pub type LookingUpTlsa<'a> =
    Pin<Box<dyn Future<Output = Result<crate::dane::TlsaAnswer, crate::dane::DaneFailure>> + Send + 'a>>;

pub trait MxResolver: Send + Sync {
    /// MX targets for `domain` in preference order. Empty when the domain does not exist or has
    /// no mail host (mail to it bounces); an error when no answer can be had now (mail waits).
    fn resolve<'a>(&'a self, domain: &'a str) -> Resolving<'a>;

    /// The DNSSEC-validated TLSA records of `_25._tcp.<host>`. A resolver that validates
    /// nothing can vouch for nothing: every answer is [`crate::dane::TlsaAnswer::NotSecure`].
    fn tlsa<'a>(&'a self, _host: &'a str) -> LookingUpTlsa<'a> {
        Box::pin(std::future::ready(Ok(crate::dane::TlsaAnswer::NotSecure)))
    }
}

/// A fixed map from domain to MX target.
#[derive(Debug, Default, Clone)]
pub struct StaticResolver {
    routes: HashMap<String, Vec<MxTarget>>,
}

impl StaticResolver {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, domain: &str, target: MxTarget) {
        self.routes.entry(crate::domain::normalize_domain(domain)).or_default().push(target);
    }

    /// The targets of `domain`, without the future around them.
    pub fn get(&self, domain: &str) -> Vec<MxTarget> {
        self.routes.get(&crate::domain::normalize_domain(domain)).cloned().unwrap_or_default()
    }
}

impl MxResolver for StaticResolver {
    fn resolve<'a>(&'a self, domain: &'a str) -> Resolving<'a> {
        Box::pin(std::future::ready(Ok(self.get(domain))))
    }
}
