//! One outbound SMTP session over its whole life: opened for a delivery, possibly kept in the
//! connection cache and reused for further deliveries to the same destination, then closed.
//! Its record, written once when it ends, lists every message it carried in order: the
//! ground truth an eavesdropper's per-session estimates are checked against.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use proto::{Capabilities, RcptOutcome};
use records::HopMessage;

use crate::client::{Client, Failure, TransactionMode, summarize};
use crate::config::RelayConfig;
use crate::connection_cache::{CachedSession, ConnectionCache};
use crate::records::RecordSink;
use crate::spool::Envelope;

pub(crate) struct Session {
    client: Client,
    caps: Capabilities,
    opened: Instant,
    /// Transactions attempted over this session.
    uses: u32,
    /// The relay's session records, where this session's is written when it ends.
    records: Arc<RecordSink>,
    /// Each transaction's outcome ("delivered", "partial", ...), for the session's.
    outcomes: Vec<&'static str>,
    /// Replies recorded before the current transaction: none since means the server never
    /// answered it, so a dead cached session can be replaced without a doubt about the mail.
    replies_before: usize,
}

impl Session {
    pub fn new(records: &Arc<RecordSink>, client: Client, caps: Capabilities, opened: Instant) -> Self {
        Self { client, caps, opened, uses: 0, records: records.clone(), outcomes: Vec::new(), replies_before: 0 }
    }

    /// One transaction for `message`, as the relay's `cfg` says. `reused`: the session comes
    /// from the cache, and RSET goes first, as Postfix sends it.
    pub async fn deliver(
        &mut self,
        cfg: &RelayConfig,
        env: &Envelope,
        rcpts: &[String],
        message: &[u8],
        reused: bool,
    ) -> Result<Vec<(String, RcptOutcome)>, Failure> {
        self.uses += 1;
        self.replies_before = self.client.rec.replies.len();
        let outcomes = self
            .client
            .transaction(
                TransactionMode {
                    pipelining: cfg.delivery.pipelining,
                    reset: reused,
                    padding: cfg.delivery.padding,
                    padding_bucket: cfg.delivery.padding_bucket,
                },
                &self.caps,
                env,
                rcpts,
                message,
                cfg.timeouts.data_end,
            )
            .await?;
        let delivered: Vec<String> =
            outcomes.iter().filter(|(_, o)| *o == RcptOutcome::Delivered).map(|(r, _)| r.clone()).collect();
        if !delivered.is_empty() {
            let rec = &mut self.client.rec;
            // The verdict on the message, not the reply to a padding NOOP after it.
            let reply = self.client.end_of_data.unwrap_or(0);
            rec.messages.push(HopMessage {
                message_id: env.message_id.clone(),
                queue_id: env.qid.clone(),
                mail_from: env.mail_from.clone(),
                rcpt_to: delivered,
                bytes: message.len() as u64,
                sha256: crate::sha256_hex(message),
                reply,
                cover: crate::cover_marker::is_cover(rcpts),
            });
        }
        self.outcomes.push(summarize(&outcomes));
        Ok(outcomes)
    }

    /// Whether a REQUIRETLS message may go over this session: its server was authenticated and
    /// offers REQUIRETLS (RFC 8689 §4.2.1), as for a new session.
    pub fn carries_requiretls(&self) -> bool {
        crate::requiretls::satisfies_requiretls(self.client.authentication())
            && self.caps.has(crate::requiretls::KEYWORD)
    }

    /// Whether the server sent nothing in answer to the last transaction.
    pub fn unanswered(&self) -> bool {
        self.client.rec.replies.len() == self.replies_before
    }

    /// Offers the session to the relay's cache; closes it when the cache does not keep it.
    pub async fn keep_or_close(self, connections: &ConnectionCache<Session>, dest: &str) {
        if let Some(s) = connections.checkin(dest, self) {
            s.close_now().await;
        }
    }

    /// The session broke: its record is written with the failure, the connection dropped.
    pub fn fail(mut self, f: &Failure) {
        self.outcomes.push(if f.permanent { "bounced" } else { "deferred" });
        self.finish(Some(f.why.clone()));
    }

    async fn close_now(mut self) {
        self.client.quit().await;
        self.finish(None);
    }

    fn finish(mut self, error: Option<String>) {
        let rec = &mut self.client.rec;
        rec.ended_at = crate::now_secs();
        rec.outcome = session_outcome(&self.outcomes).into();
        rec.error = error;
        self.records.write(rec);
    }
}

/// A session's outcome from its transactions': theirs when they agree, else `partial`.
fn session_outcome(outcomes: &[&'static str]) -> &'static str {
    match outcomes.split_first() {
        None => "closed",
        Some((first, rest)) if rest.iter().all(|o| o == first) => first,
        Some(_) => "partial",
    }
}

impl CachedSession for Session {
    fn opened(&self) -> Instant {
        self.opened
    }

    fn uses(&self) -> u32 {
        self.uses
    }

    fn close(self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(self.close_now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_outcome_is_its_transactions_when_they_agree() {
        assert_eq!(session_outcome(&["delivered", "delivered"]), "delivered");
        assert_eq!(session_outcome(&["delivered", "deferred"]), "partial");
        assert_eq!(session_outcome(&["deferred"]), "deferred");
        assert_eq!(session_outcome(&[]), "closed");
    }
}
