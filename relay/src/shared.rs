//! The state one relay's tasks share ([`Shared`]): its configuration, spool, session records,
//! TLS configs, MTA-STS cache, outbound connection cache, batches, TLS-RPT reporter, and the
//! queue's ready channel and counts. [`crate::relay`] builds it and runs the listeners and the
//! queue over it; inbound sessions ([`crate::server`]), deliveries ([`crate::delivery`]) and
//! cover traffic ([`crate::cover`]) reach it through an `Arc`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustls::{ClientConfig, ServerConfig};
use tokio::sync::{Notify, mpsc};

use crate::config::RelayConfig;
use crate::connection_cache::ConnectionCache;
use crate::error::RelayError;
use crate::outbound_session::Session;
use crate::records::RecordSink;
use crate::spool::{Envelope, Spool};
use crate::tlsrpt::TlsReporter;

/// State shared by every session and delivery task of one relay.
pub(crate) struct Shared {
    pub cfg: RelayConfig,
    pub spool: Spool,
    /// Shared with the outbound sessions, which write their records when they end.
    pub records: Arc<RecordSink>,
    pub tls_server: Option<Arc<ServerConfig>>,
    pub tls_client_any: Arc<ClientConfig>,
    pub tls_client_verify: Option<Arc<ClientConfig>>,
    /// MTA-STS lookups and the policy cache, when the relay honours MTA-STS.
    pub mta_sts: Option<crate::mta_sts::MtaSts>,
    /// Outbound sessions kept for reuse, and the per-destination concurrency while reuse is on.
    pub connections: ConnectionCache<Session>,
    /// Outbound mail held per destination until its batch goes (off by default).
    pub batches: crate::batching::Batcher,
    /// Queue ids ready for a delivery attempt.
    pub(crate) ready: mpsc::UnboundedSender<String>,
    /// Messages in the spool (accepted, not yet finished).
    pub(crate) queued: AtomicUsize,
    pub(crate) queue_changed: Notify,
    /// Local deliveries found already done after a restart (at-least-once made visible).
    pub duplicates: AtomicUsize,
    /// Outbound TLS results for the TLS-RPT reports written at shutdown.
    pub tlsrpt: TlsReporter,
}

impl Shared {
    /// Stores a message durably and schedules its delivery. Returns once it is safe to say 250.
    pub fn enqueue(&self, env: &Envelope, message: &[u8]) -> Result<(), RelayError> {
        self.spool.store(env, message)?;
        self.queued.fetch_add(1, Ordering::SeqCst);
        let _ = self.ready.send(env.qid.clone());
        Ok(())
    }
}
