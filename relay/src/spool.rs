//! The durable queue. A message is on disk, its file and its directory entry fsynced, before the
//! relay answers `250`; it leaves the spool only after every recipient was delivered or bounced.
//! A restart finds the queue by listing the envelope files. A crash after delivery but before
//! removal delivers the message again (at least once, as Postfix does).
//!
//! Files are 0600 in a 0700 directory and never written through a symbolic link
//! ([`crate::files`]).
//!
//! Layout: `<spool>/queue/<qid>.msg` holds the message bytes; `<qid>.env` the envelope as JSON.
//! The envelope is written last and is the commit point: a `.msg` without `.env` is debris from a
//! crash during receipt (never acknowledged) and is removed on start.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::RelayError;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub qid: String,
    /// The Message-ID header, when the message has one.
    pub message_id: String,
    pub mail_from: String,
    /// Recipients not yet delivered.
    pub pending: Vec<String>,
    pub received_at: f64,
    pub attempts: u32,
    /// How often this message was handed to a next hop or mailbox before (a restart that finds
    /// `delivered` recipients still pending counts a duplicate).
    pub deliveries: u32,
    /// Received with the REQUIRETLS MAIL parameter (RFC 8689): every onward hop must be
    /// verified TLS to a next hop offering REQUIRETLS, or the message bounces
    /// ([`crate::requiretls`]). Absent in envelopes spooled before it existed: false.
    #[serde(default)]
    pub requiretls: bool,
}

pub struct Spool {
    dir: PathBuf,
    counter: AtomicU64,
}

impl Spool {
    pub fn open(root: &Path) -> Result<Self, RelayError> {
        let dir = root.join("queue");
        crate::files::create_private_dir_all(&dir).map_err(|source| RelayError::Spool { path: dir.clone(), source })?;
        let spool = Self { dir, counter: AtomicU64::new(0) };
        spool.remove_debris()?;
        Ok(spool)
    }

    fn err(&self, source: std::io::Error) -> RelayError {
        RelayError::Spool { path: self.dir.clone(), source }
    }

    /// A queue id unique across restarts: time in microseconds, then a counter.
    pub fn new_qid(&self) -> String {
        let micros =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or(0);
        format!("{micros:X}{:04X}", self.counter.fetch_add(1, Ordering::Relaxed) % 0x10000)
    }

    /// Stores a message durably. Returns only when it is safe to answer 250.
    pub fn store(&self, env: &Envelope, message: &[u8]) -> Result<(), RelayError> {
        write_durably(&self.dir.join(format!("{}.msg", env.qid)), message).map_err(|e| self.err(e))?;
        self.update(env)
    }

    /// Rewrites the envelope (pending recipients, attempts) durably.
    pub fn update(&self, env: &Envelope) -> Result<(), RelayError> {
        let json = serde_json::to_vec(env).map_err(|e| self.err(e.into()))?;
        write_durably(&self.dir.join(format!("{}.env", env.qid)), &json).map_err(|e| self.err(e))?;
        sync_dir(&self.dir).map_err(|e| self.err(e))
    }

    /// The envelope of one queued message; `None` once it has left the queue.
    pub fn envelope(&self, qid: &str) -> Result<Option<Envelope>, RelayError> {
        let path = self.dir.join(format!("{qid}.env"));
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| RelayError::BadFile {
                path,
                why: format!("unreadable envelope ({e}); left in place for a person to look at"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    pub fn message(&self, qid: &str) -> Result<Vec<u8>, RelayError> {
        std::fs::read(self.dir.join(format!("{qid}.msg"))).map_err(|e| self.err(e))
    }

    /// Removes a finished message: envelope first, so a crash in between leaves only debris.
    pub fn remove(&self, qid: &str) -> Result<(), RelayError> {
        std::fs::remove_file(self.dir.join(format!("{qid}.env"))).map_err(|e| self.err(e))?;
        let _ = std::fs::remove_file(self.dir.join(format!("{qid}.msg")));
        sync_dir(&self.dir).map_err(|e| self.err(e))
    }

    /// Every queued envelope, oldest first. Unreadable envelopes are reported and skipped, never
    /// deleted: a person should look at them.
    pub fn list(&self) -> Result<Vec<Envelope>, RelayError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| self.err(e))? {
            let path = entry.map_err(|e| self.err(e))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("env") {
                continue;
            }
            match std::fs::read(&path).map(|b| serde_json::from_slice::<Envelope>(&b)) {
                Ok(Ok(env)) => out.push(env),
                Ok(Err(e)) => tracing::error!("{}: unreadable envelope ({e}); left in place", path.display()),
                // Delivered and removed while we listed: not an error.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::error!("{}: {e}", path.display()),
            }
        }
        out.sort_by(|a, b| a.received_at.total_cmp(&b.received_at).then_with(|| a.qid.cmp(&b.qid)));
        Ok(out)
    }

    fn remove_debris(&self) -> Result<(), RelayError> {
        for entry in std::fs::read_dir(&self.dir).map_err(|e| self.err(e))? {
            let path = entry.map_err(|e| self.err(e))?.path();
            let ext = path.extension().and_then(|e| e.to_str());
            let orphan_msg = ext == Some("msg") && !path.with_extension("env").exists();
            if orphan_msg || ext == Some("tmp") {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(())
    }
}

pub use crate::files::{sync_dir, write_durably};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_list_remove_and_debris() {
        let root = std::env::temp_dir().join(format!("spool-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let spool = Spool::open(&root).expect("open");
        let env = Envelope {
            qid: spool.new_qid(),
            message_id: "m1@x".into(),
            mail_from: "a@x".into(),
            pending: vec!["b@y".into()],
            received_at: 1.0,
            attempts: 0,
            deliveries: 0,
            requiretls: true,
        };
        spool.store(&env, b"hello\r\n").expect("store");
        std::fs::write(root.join("queue/ORPHAN.msg"), b"x").expect("debris");
        let spool = Spool::open(&root).expect("reopen");
        assert!(!root.join("queue/ORPHAN.msg").exists());
        let listed = spool.list().expect("list");
        assert_eq!(listed.len(), 1);
        assert!(listed[0].requiretls, "the REQUIRETLS flag survives a restart");
        let old: Envelope = serde_json::from_str(
            r#"{"qid":"Q","message_id":"","mail_from":"","pending":[],"received_at":0,"attempts":0,"deliveries":0}"#,
        )
        .expect("an envelope spooled before the flag");
        assert!(!old.requiretls);
        assert_eq!(spool.message(&env.qid).expect("read"), b"hello\r\n");
        spool.remove(&env.qid).expect("remove");
        assert!(spool.list().expect("list").is_empty());
    }
}
