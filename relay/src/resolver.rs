//! MX lookup. A trait, so scenarios resolve from their own map and a later backend can ask DNS.

use std::collections::HashMap;
use std::net::SocketAddr;

/// Where mail for a domain goes: the MX host name (for SNI, certificate checks and records) and
/// the address to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxTarget {
    pub host: String,
    pub addr: SocketAddr,
    /// The system that owns the MX, when the resolver knows it (scenarios do).
    pub system: Option<String>,
}

pub trait MxResolver: Send + Sync {
    /// MX targets for `domain` in preference order; empty when the domain is unknown.
    fn resolve(&self, domain: &str) -> Vec<MxTarget>;
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
        self.routes.entry(domain.to_ascii_lowercase()).or_default().push(target);
    }
}

impl MxResolver for StaticResolver {
    fn resolve(&self, domain: &str) -> Vec<MxTarget> {
        self.routes.get(&domain.to_ascii_lowercase()).cloned().unwrap_or_default()
    }
}
