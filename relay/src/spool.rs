//! The durable queue. A message is on disk, its file and its directory entry fsynced, before the
//! relay answers `250`; it leaves the spool only after every recipient was delivered or bounced.
//! A restart finds the queue by listing the queue files. A crash after delivery but before
//! removal delivers the message again (at least once, as Postfix does).
//!
//! Files are 0600 in a 0700 directory and never written through a symbolic link
//! ([`crate::files`]).
//!
//! # Layout
//!
//! One file per queued message, envelope and message together, as Postfix's queue file:
//! `<spool>/queue/<qid>.queued` is a header line `smtplab-queue 1 <E> <M>\n`, the envelope as
//! `E` bytes of JSON, a `\n`, then the `M` bytes of the message as received. The lengths check
//! the whole file: one whose size disagrees (a copy cut short, a disk fault) is reported and left
//! in place for a person, never delivered cut.
//!
//! # Why a crash at any step loses no acknowledged message
//!
//! `store` (before `250`): (1) write `<qid>.tmp`, (2) fsync it, (3) rename it to `<qid>.queued`,
//! (4) fsync the directory, (5) only then report success. rename(2) is atomic: after a crash the
//! name `<qid>.queued` either does not exist or names the whole file, because (2) put its bytes
//! on disk before (3) gave it that name.
//! - Crash in (1)–(2): a `.tmp`, partial or whole, and no queue file. Nothing was acknowledged;
//!   [`Spool::open`] removes the `.tmp`.
//! - Crash between (3) and (4): the rename may or may not have reached the disk. Nothing was
//!   acknowledged either; if the file survived, the message is delivered, and the client, which
//!   never saw `250`, may send it again: a duplicate, never a loss (Postfix behaves the same).
//! - After (4) the name is on disk, so the `250` that follows is a promise the disk keeps.
//!
//! `update` (a deferral: fewer pending recipients, one more attempt) writes the whole file again
//! by the same steps under the same name: after a crash the file is the old or the new version,
//! each whole; the old one only repeats deliveries already made (at least once).
//!
//! `remove` renames the file to `<qid>.free` (or unlinks it) and fsyncs the directory. A crash
//! before that fsync may bring the queue file back: the message is delivered again (at least
//! once).
//!
//! # File reuse
//!
//! Creating a file is the spool's largest cost left after the fsyncs (ext4 without a journal
//! scans past every inode freed in the last seconds to find one: BENCHMARKS.md). So a finished
//! message's file is renamed to `<qid>.free` rather than unlinked (up to [`MAX_FREE`] of them),
//! and `store` writes the next message over one of them instead of a new `.tmp`: from its start,
//! cut to length, fsynced, and only then renamed to `<qid>.queued`. That is step (1)-(2) above
//! under another name that is not a queue name either, so the argument is unchanged: a crash
//! while a `.free` file is rewritten leaves it a `.free` file, which [`Spool::open`] takes back
//! for reuse (or removes) and never lists, whatever it holds. A `.free` file keeps the finished
//! message's bytes until it is written over (0600 in a 0700 directory, as the queue) or the
//! relay shuts down ([`Spool::discard_free`]).
//!
//! # Group commit
//!
//! A directory fsync writes out every change to the directory made before it started, whoever
//! made it. So a caller need not run its own: it needs one that *started after* its own rename
//! or unlink returned and that succeeded. [`DirSync`] runs one fsync at a time; callers arriving
//! while one runs wait for the next, which then covers all of them (messages accepted together
//! on several sessions share one directory fsync). A failed directory fsync is sticky: Linux may
//! drop the dirty state it could not write and let a later fsync succeed without writing it
//! ("fsyncgate"), so no later success proves anything and every later commit fails until the
//! relay is restarted, its spool recovered from what the disk really holds.
//!
//! The argument assumes what POSIX and journalling file systems (ext4 with its journal, XFS,
//! btrfs) give: rename atomic across a crash, a directory fsync that makes its entries durable.
//!
//! # The old layout
//!
//! Spools written before this layout hold `<qid>.msg` (the message) and `<qid>.env` (the
//! envelope, written last: the commit point). [`Spool::open`] converts them: the queue file is
//! written and committed first, then `.env` is removed, then `.msg`. A crash at any step of that
//! leaves a state the next open finishes: a `.env` beside a queue file of the same id is a
//! finished conversion (the queue file was committed before anything was removed), and a `.msg`
//! without `.env` is debris (a receipt that never got its `250`, or the last step of a
//! conversion), as it always was.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::RelayError;
use crate::queue_file::MAGIC;
/// What can be wrong with a queue file's bytes; [`RelayError::BadQueueFile`] carries it.
pub use crate::queue_file::QueueFileDefect;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// Extension of a queue file (the current layout).
const QUEUED: &str = "queued";
/// Longest header line accepted: the magic and two lengths.
const MAX_HEADER: usize = 64;
/// Largest envelope accepted when reading: far beyond any recipient limit, short of absurd.
const MAX_ENVELOPE: u64 = 64 << 20;
/// Extension of a finished message's file kept for reuse.
const FREE: &str = "free";
/// Files kept for reuse: about as many as messages in flight at once (the queue runner's 32
/// workers, the sessions' stores); more are unlinked.
const MAX_FREE: usize = 64;

pub struct Spool {
    dir: PathBuf,
    counter: AtomicU64,
    /// Directory fsyncs, shared by the callers that need one at the same time.
    sync: DirSync,
    /// Files of finished messages kept for reuse (`<qid>.free`), at most [`MAX_FREE`].
    free: Mutex<Vec<PathBuf>>,
}

impl Spool {
    /// Opens (creating) `<root>/queue` and recovers it: removes debris of receipts that never
    /// got their `250` and converts messages spooled in the old two-file layout.
    pub fn open(root: &Path) -> Result<Self, RelayError> {
        let dir = root.join("queue");
        crate::files::create_private_dir_all(&dir).map_err(|source| RelayError::Spool { path: dir.clone(), source })?;
        let spool = Self { sync: DirSync::new(&dir), dir, counter: AtomicU64::new(0), free: Mutex::new(Vec::new()) };
        spool.recover()?;
        Ok(spool)
    }

    fn err(&self, source: std::io::Error) -> RelayError {
        RelayError::Spool { path: self.dir.clone(), source }
    }

    fn path(&self, qid: &str) -> PathBuf {
        self.dir.join(format!("{qid}.{QUEUED}"))
    }

    /// A queue id unique across restarts: time in microseconds, then a counter.
    pub fn new_qid(&self) -> String {
        let micros =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or(0);
        format!("{micros:X}{:04X}", self.counter.fetch_add(1, Ordering::Relaxed) % 0x10000)
    }

    /// Stores a message durably. Returns only when it is safe to answer 250.
    pub fn store(&self, env: &Envelope, message: &[u8]) -> Result<(), RelayError> {
        let path = self.path(&env.qid);
        let bytes = encode(env, message)?;
        let reused = self.take_free().is_some_and(|free| match overwrite_durably(&free, &bytes) {
            // rename(2) replaces a link at `path` itself; it never writes through it.
            Ok(()) => std::fs::rename(&free, &path).is_ok(),
            Err(_) => {
                let _ = std::fs::remove_file(&free);
                false
            }
        });
        if !reused {
            crate::files::write_durably(&path, &bytes).map_err(|e| self.err(e))?;
        }
        if let Err(e) = self.sync.commit() {
            // Not acknowledged: the client sends it again. Leaving the file would deliver it
            // twice if the name did reach the disk.
            let _ = std::fs::remove_file(&path);
            return Err(self.err(e));
        }
        Ok(())
    }

    /// Rewrites a queued message's envelope (pending recipients, attempts) durably. The message
    /// goes with it: the file is written whole again (a deferral, off the path of mail that
    /// goes through at once).
    pub fn update(&self, env: &Envelope) -> Result<(), RelayError> {
        let Some((_, message)) = self.load(&env.qid)? else {
            return Err(
                self.err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("{}: not in the queue", env.qid)))
            );
        };
        crate::files::write_durably(&self.path(&env.qid), &encode(env, &message)?).map_err(|e| self.err(e))?;
        self.sync.commit().map_err(|e| self.err(e))
    }

    /// The envelope of one queued message; `None` once it has left the queue.
    pub fn envelope(&self, qid: &str) -> Result<Option<Envelope>, RelayError> {
        let path = self.path(qid);
        match read_envelope(&path) {
            Ok(env) => Ok(Some(env)),
            Err(Bad::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(bad) => Err(bad.into_error(path)),
        }
    }

    /// The envelope and the message of one queued message, in one read; `None` once it has
    /// left the queue.
    pub fn load(&self, qid: &str) -> Result<Option<(Envelope, Vec<u8>)>, RelayError> {
        let path = self.path(qid);
        match std::fs::read(&path) {
            Ok(bytes) => decode(bytes).map(Some).map_err(|bad| bad.into_error(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Removes a finished message. Returns once the removal is on disk. Its file is kept for
    /// reuse under another name while fewer than [`MAX_FREE`] are (see "File reuse").
    pub fn remove(&self, qid: &str) -> Result<(), RelayError> {
        let path = self.path(qid);
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() < MAX_FREE {
            let to = self.dir.join(format!("{qid}.{FREE}"));
            std::fs::rename(&path, &to).map_err(|e| self.err(e))?;
            free.push(to);
        } else {
            std::fs::remove_file(&path).map_err(|e| self.err(e))?;
        }
        drop(free);
        self.sync.commit().map_err(|e| self.err(e))
    }

    /// Unlinks the files kept for reuse, so a relay that stops leaves no finished message's
    /// bytes in its spool (a restart begins with none kept; nothing needs them).
    pub fn discard_free(&self) {
        let kept = std::mem::take(&mut *self.free.lock().unwrap_or_else(|p| p.into_inner()));
        for path in kept {
            let _ = std::fs::remove_file(path);
        }
    }

    /// A kept file to write the next message into, if there is one.
    fn take_free(&self) -> Option<PathBuf> {
        self.free.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    /// Every queued envelope, oldest first. Unreadable queue files are reported and skipped,
    /// never deleted: a person should look at them.
    pub fn list(&self) -> Result<Vec<Envelope>, RelayError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| self.err(e))? {
            let path = entry.map_err(|e| self.err(e))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some(QUEUED) {
                continue;
            }
            match read_envelope(&path) {
                Ok(env) => out.push(env),
                // Delivered and removed while we listed: not an error.
                Err(Bad::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(bad) => tracing::error!("{}", bad.into_error(path)),
            }
        }
        out.sort_by(|a, b| a.received_at.total_cmp(&b.received_at).then_with(|| a.qid.cmp(&b.qid)));
        Ok(out)
    }

    /// Directory fsyncs run, and commits they served (store, update, remove), since open.
    pub fn sync_counts(&self) -> (u64, u64) {
        let s = self.sync.state.lock().unwrap_or_else(|p| p.into_inner());
        (s.finished, s.commits)
    }

    /// Removes debris (`.tmp` files; `.msg` without `.env`) and converts the old layout.
    fn recover(&self) -> Result<(), RelayError> {
        let mut names: Vec<PathBuf> = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| self.err(e))? {
            names.push(entry.map_err(|e| self.err(e))?.path());
        }
        let ext = |p: &Path| p.extension().and_then(|e| e.to_str()).map(str::to_string);
        let mut changed = false;
        for path in names.iter().filter(|p| ext(p).as_deref() == Some("tmp")) {
            let _ = std::fs::remove_file(path);
            changed = true;
        }
        // Kept files, whatever a crash left in them: reused up to the limit, the rest removed.
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        for path in names.iter().filter(|p| ext(p).as_deref() == Some(FREE)) {
            let is_file = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file());
            if is_file && free.len() < MAX_FREE {
                free.push(path.clone());
            } else {
                let _ = std::fs::remove_file(path);
                changed = true;
            }
        }
        drop(free);
        for env_path in names.iter().filter(|p| ext(p).as_deref() == Some("env")) {
            let queued = env_path.with_extension(QUEUED);
            if !queued.exists() {
                match convert(env_path) {
                    Ok(bytes) => {
                        crate::files::write_durably(&queued, &bytes).map_err(|e| self.err(e))?;
                        // The queue file is on disk before its old halves go.
                        self.sync.commit().map_err(|e| self.err(e))?;
                    }
                    Err(why) => {
                        tracing::error!("{}: {why}; left in place for a person to look at", env_path.display());
                        continue;
                    }
                }
            }
            std::fs::remove_file(env_path).map_err(|e| self.err(e))?;
            changed = true;
        }
        for entry in std::fs::read_dir(&self.dir).map_err(|e| self.err(e))? {
            let path = entry.map_err(|e| self.err(e))?.path();
            if ext(&path).as_deref() == Some("msg") && !path.with_extension("env").exists() {
                let _ = std::fs::remove_file(&path);
                changed = true;
            }
        }
        if changed {
            self.sync.commit().map_err(|e| self.err(e))?;
        }
        Ok(())
    }
}

/// Messages queued under `spool` (its `queue` directory), counted from the file names, for
/// callers outside the relay's process: queue files, and envelopes of the old layout not yet
/// converted.
pub fn count_queued(spool: &Path) -> usize {
    let Ok(dir) = std::fs::read_dir(spool.join("queue")) else { return 0 };
    dir.flatten()
        .filter(|e| {
            let p = e.path();
            match p.extension().and_then(|x| x.to_str()) {
                Some(QUEUED) => true,
                Some("env") => !p.with_extension(QUEUED).exists(),
                _ => false,
            }
        })
        .count()
}

pub use crate::files::{sync_dir, write_durably};

/// Directory fsyncs shared by concurrent callers (group commit; the module doc says why it is
/// safe). Generation `g` is the g-th fsync started; a caller needs the first one that starts
/// after it arrived.
struct DirSync {
    dir: PathBuf,
    state: Mutex<SyncState>,
    done: Condvar,
}

#[derive(Default)]
struct SyncState {
    /// Generations started; while `running`, the one in progress.
    started: u64,
    /// Generations finished (successfully or not).
    finished: u64,
    running: bool,
    /// The first generation whose fsync failed, and why: it and every later one fail.
    failed: Option<(u64, String)>,
    /// Callers served, to tell how many commits one fsync covered.
    commits: u64,
}

impl DirSync {
    fn new(dir: &Path) -> Self {
        Self { dir: dir.to_path_buf(), state: Mutex::new(SyncState::default()), done: Condvar::new() }
    }

    /// Returns once a directory fsync that started after this call began has succeeded: every
    /// rename or unlink the caller finished before calling is then on disk.
    fn commit(&self) -> std::io::Result<()> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.commits += 1;
        // The one running (if any) may have started before our rename: we need the next.
        let need = s.started + 1;
        loop {
            if let Some((g, why)) = &s.failed
                && *g <= need
                && s.finished >= *g
            {
                return Err(std::io::Error::other(format!(
                    "an fsync of the spool directory failed ({why}); what it holds on disk is unknown \
                     until the relay is restarted"
                )));
            }
            if s.finished >= need {
                return Ok(());
            }
            if s.running {
                s = self.done.wait(s).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            s.running = true;
            s.started += 1;
            let generation = s.started;
            drop(s);
            let result = sync_dir(&self.dir);
            s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.running = false;
            s.finished = generation;
            if let Err(e) = result
                && s.failed.is_none()
            {
                s.failed = Some((generation, e.to_string()));
            }
            self.done.notify_all();
        }
    }
}

/// Writes `bytes` over the kept file `path` from its start, cuts it to their length and fsyncs
/// it: the same durability as a new temporary file, without allocating an inode.
fn overwrite_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NOFOLLOW).open(path)?;
    f.write_all(bytes)?;
    f.set_len(bytes.len() as u64)?;
    f.sync_all()
}

/// What is wrong with a queue file.
enum Bad {
    Io(std::io::Error),
    Format(QueueFileDefect),
}

impl Bad {
    fn into_error(self, path: PathBuf) -> RelayError {
        match self {
            Bad::Io(source) => RelayError::Spool { path, source },
            Bad::Format(defect) => RelayError::BadQueueFile { path, defect },
        }
    }
}

/// A queue file's bytes: header line, envelope, `\n`, message.
fn encode(env: &Envelope, message: &[u8]) -> Result<Vec<u8>, RelayError> {
    let json = serde_json::to_vec(env).map_err(|e| RelayError::Io(e.into()))?;
    let header = format!("{MAGIC} {} {}\n", json.len(), message.len());
    let mut out = Vec::with_capacity(header.len() + json.len() + 1 + message.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&json);
    out.push(b'\n');
    out.extend_from_slice(message);
    Ok(out)
}

/// Reads a header line: the envelope's and the message's lengths, and the line's own length.
fn parse_header(line: &[u8]) -> Result<(u64, u64, u64), Bad> {
    let text = std::str::from_utf8(line).map_err(|_| Bad::Format(QueueFileDefect::HeaderNotText))?;
    let Some(rest) = text.strip_suffix('\n').and_then(|t| t.strip_prefix(MAGIC)).and_then(|t| t.strip_prefix(' '))
    else {
        return Err(Bad::Format(QueueFileDefect::NoHeader));
    };
    let mut words = rest.split(' ').map(|w| w.parse::<u64>());
    match (words.next(), words.next(), words.next()) {
        (Some(Ok(e)), Some(Ok(m)), None) if e <= MAX_ENVELOPE => Ok((e, m, line.len() as u64)),
        _ => Err(Bad::Format(QueueFileDefect::BadHeader { line: text.trim_end().to_string() })),
    }
}

/// Splits a whole queue file into its envelope and message, checking every length.
fn decode(mut bytes: Vec<u8>) -> Result<(Envelope, Vec<u8>), Bad> {
    let line_end = bytes.iter().take(MAX_HEADER).position(|&b| b == b'\n');
    let Some(line_end) = line_end else { return Err(Bad::Format(QueueFileDefect::NoHeader)) };
    let (env_len, msg_len, header_len) = parse_header(bytes.get(..=line_end).unwrap_or_default())?;
    let total = header_len + env_len + 1 + msg_len;
    if bytes.len() as u64 != total {
        return Err(Bad::Format(QueueFileDefect::Length { size: bytes.len() as u64, expected: total }));
    }
    // In range: `total` is the length, checked just above.
    let (h, e) = (header_len as usize, env_len as usize);
    let env: Envelope = serde_json::from_slice(bytes.get(h..h + e).unwrap_or_default())
        .map_err(|err| Bad::Format(QueueFileDefect::Envelope(err)))?;
    if bytes.get(h + e) != Some(&b'\n') {
        return Err(Bad::Format(QueueFileDefect::NoEnvelopeEnd));
    }
    bytes.drain(..h + e + 1);
    Ok((env, bytes))
}

/// Reads only the header and envelope of a queue file (listing a large queue reads no message),
/// checking the file's length against the header.
fn read_envelope(path: &Path) -> Result<Envelope, Bad> {
    let file = std::fs::File::open(path).map_err(Bad::Io)?;
    let size = file.metadata().map_err(Bad::Io)?.len();
    let mut reader = std::io::BufReader::new(file);
    let mut line = Vec::new();
    reader.by_ref().take(MAX_HEADER as u64).read_until(b'\n', &mut line).map_err(Bad::Io)?;
    let (env_len, msg_len, header_len) = parse_header(&line)?;
    let total = header_len + env_len + 1 + msg_len;
    if size != total {
        return Err(Bad::Format(QueueFileDefect::Length { size, expected: total }));
    }
    let mut json = Vec::new();
    reader.take(env_len).read_to_end(&mut json).map_err(Bad::Io)?;
    serde_json::from_slice(&json).map_err(|e| Bad::Format(QueueFileDefect::Envelope(e)))
}

/// The queue file for an old-layout message (`<qid>.env` and its `<qid>.msg`).
fn convert(env_path: &Path) -> Result<Vec<u8>, String> {
    let json = std::fs::read(env_path).map_err(|e| format!("cannot read the envelope: {e}"))?;
    let env: Envelope = serde_json::from_slice(&json).map_err(|e| format!("unreadable envelope ({e})"))?;
    let message = std::fs::read(env_path.with_extension("msg"))
        .map_err(|e| format!("an envelope whose message cannot be read ({e})"))?;
    encode(&env, &message).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("spool-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        root
    }

    fn envelope(qid: &str) -> Envelope {
        Envelope {
            qid: qid.into(),
            message_id: format!("{qid}@x"),
            mail_from: "a@x".into(),
            pending: vec!["b@y".into()],
            received_at: 1.0,
            attempts: 0,
            deliveries: 0,
            requiretls: true,
        }
    }

    #[test]
    fn store_list_remove_and_debris() {
        let root = scratch("basic");
        let spool = Spool::open(&root).expect("open");
        let env = envelope(&spool.new_qid());
        spool.store(&env, b"hello\r\n").expect("store");
        std::fs::write(root.join("queue/ORPHAN.msg"), b"x").expect("debris");
        std::fs::write(root.join("queue/HALF.tmp"), b"smtplab-queue 1 9").expect("debris");
        let spool = Spool::open(&root).expect("reopen");
        assert!(!root.join("queue/ORPHAN.msg").exists());
        assert!(!root.join("queue/HALF.tmp").exists());
        let listed = spool.list().expect("list");
        assert_eq!(listed, vec![env.clone()]);
        assert!(listed[0].requiretls, "the REQUIRETLS flag survives a restart");
        let old: Envelope = serde_json::from_str(
            r#"{"qid":"Q","message_id":"","mail_from":"","pending":[],"received_at":0,"attempts":0,"deliveries":0}"#,
        )
        .expect("an envelope spooled before the flag");
        assert!(!old.requiretls);
        assert_eq!(spool.load(&env.qid).expect("read"), Some((env.clone(), b"hello\r\n".to_vec())));
        spool.remove(&env.qid).expect("remove");
        assert!(spool.list().expect("list").is_empty());
        assert_eq!(spool.load(&env.qid).expect("gone"), None);
        let left: Vec<_> =
            std::fs::read_dir(root.join("queue")).expect("dir").flatten().map(|e| e.file_name()).collect();
        assert_eq!(left, [std::ffi::OsString::from(format!("{}.free", env.qid))], "only the file kept for reuse");
        let _ = std::fs::remove_dir_all(&root);
    }

    /// The file format, spelled out by hand: a change to it must change this test (and say how
    /// spools of the earlier format are read).
    #[test]
    fn queue_file_format_is_the_documented_one() {
        let root = scratch("format");
        let spool = Spool::open(&root).expect("open");
        let json = r#"{"qid":"Q1","message_id":"m@x","mail_from":"a@x","pending":["b@y","c@z"],"received_at":5.5,"attempts":2,"deliveries":1,"requiretls":false}"#;
        let message = b"Subject: hi\r\n\r\nbody\r\n";
        let mut file = format!("smtplab-queue 1 {} {}\n{json}\n", json.len(), message.len()).into_bytes();
        file.extend_from_slice(message);
        std::fs::write(root.join("queue/Q1.queued"), &file).expect("write");
        let (env, got) = spool.load("Q1").expect("load").expect("queued");
        assert_eq!(got, message);
        assert_eq!((env.pending.len(), env.attempts, env.deliveries, env.received_at), (2, 2, 1, 5.5));
        assert_eq!(spool.envelope("Q1").expect("envelope"), Some(env.clone()));
        // And what the spool writes reads back as the same bytes.
        spool.remove("Q1").expect("remove");
        spool.store(&env, message).expect("store");
        let written = std::fs::read(root.join("queue/Q1.queued")).expect("read");
        let header_end = written.iter().position(|&b| b == b'\n').expect("header line");
        let header = std::str::from_utf8(&written[..header_end]).expect("text");
        let words: Vec<&str> = header.split(' ').collect();
        assert_eq!(&words[..2], ["smtplab-queue", "1"]);
        let (e, m): (usize, usize) = (words[2].parse().expect("e"), words[3].parse().expect("m"));
        assert_eq!(m, message.len());
        assert_eq!(written.len(), header_end + 1 + e + 1 + m);
        assert_eq!(&written[written.len() - m..], message);
        let _ = std::fs::remove_dir_all(&root);
    }

    /// Each state a crash can leave in the middle of `store`, made with real files as the steps
    /// leave them, then the spool opened as a restart opens it.
    #[test]
    fn a_crash_at_each_step_of_store_is_recovered() {
        let root = scratch("store-crash");
        let spool = Spool::open(&root).expect("open");
        let queue = root.join("queue");
        // A message acknowledged earlier, which every recovery must keep.
        let kept = envelope("KEPT");
        spool.store(&kept, b"kept\r\n").expect("store");
        // The bytes the spool would write for a message B (from a second spool: same layout).
        let other = scratch("store-crash-src");
        let src = Spool::open(&other).expect("open");
        let b = envelope("B");
        src.store(&b, b"message B\r\n").expect("store");
        let whole = std::fs::read(other.join("queue/B.queued")).expect("read");

        // (1) crash while writing the temporary file: part of it.
        std::fs::write(queue.join("B.tmp"), &whole[..whole.len() / 2]).expect("write");
        let spool = Spool::open(&root).expect("recover");
        assert_eq!(spool.list().expect("list"), vec![kept.clone()]);
        assert!(!queue.join("B.tmp").exists(), "the partial file is removed");
        // (2) crash after the fsync, before the rename: all of it, under the temporary name.
        std::fs::write(queue.join("B.tmp"), &whole).expect("write");
        let spool = Spool::open(&root).expect("recover");
        assert_eq!(spool.list().expect("list"), vec![kept.clone()], "never acknowledged: not queued");
        assert!(!queue.join("B.tmp").exists());
        // (3) crash after the rename (before or after the directory fsync): the whole file.
        std::fs::write(queue.join("B.queued"), &whole).expect("write");
        let spool = Spool::open(&root).expect("recover");
        let mut want = vec![kept.clone(), b.clone()];
        want.sort_by(|x, y| x.qid.cmp(&y.qid));
        assert_eq!(spool.list().expect("list"), want);
        assert_eq!(spool.load("B").expect("load"), Some((b.clone(), b"message B\r\n".to_vec())));
        assert_eq!(spool.load("KEPT").expect("load"), Some((kept.clone(), b"kept\r\n".to_vec())));
        // An update that crashed before its rename leaves the old version and a temporary file.
        let mut b2 = b.clone();
        b2.attempts = 3;
        std::fs::write(queue.join("B.tmp"), b"smtplab-queue 1 12").expect("write");
        let spool = Spool::open(&root).expect("recover");
        assert_eq!(spool.envelope("B").expect("envelope"), Some(b.clone()));
        spool.update(&b2).expect("update");
        let spool = Spool::open(&root).expect("reopen");
        assert_eq!(spool.load("B").expect("load"), Some((b2, b"message B\r\n".to_vec())));
        let _ = std::fs::remove_dir_all(&root);
        let _ = std::fs::remove_dir_all(&other);
    }

    /// A finished message's file is written over by the next message (same inode, cut to the
    /// new length), and a `.free` file is never queued, whatever a crash left in it: here a
    /// whole queue file, as a crash after its fsync and before its rename leaves it.
    #[test]
    fn finished_files_are_reused_and_never_listed() {
        use std::os::unix::fs::MetadataExt;
        let root = scratch("reuse");
        let queue = root.join("queue");
        let spool = Spool::open(&root).expect("open");
        let long = envelope("LONG");
        spool.store(&long, &[b'x'; 5000]).expect("store");
        let inode = std::fs::metadata(queue.join("LONG.queued")).expect("meta").ino();
        spool.remove("LONG").expect("remove");
        assert!(queue.join("LONG.free").exists() && !queue.join("LONG.queued").exists());
        let short = envelope("SHORT");
        spool.store(&short, b"short\r\n").expect("store");
        assert_eq!(std::fs::metadata(queue.join("SHORT.queued")).expect("meta").ino(), inode, "the same file");
        assert!(!queue.join("LONG.free").exists());
        assert_eq!(spool.load("SHORT").expect("load"), Some((short.clone(), b"short\r\n".to_vec())));

        // Crash states of a reuse: a kept file written over in part, and one written whole
        // (fsynced) but not yet renamed. Neither is queued after a restart; both are reused.
        let whole = std::fs::read(queue.join("SHORT.queued")).expect("read");
        std::fs::write(queue.join("P.free"), &whole[..whole.len() / 2]).expect("partial");
        std::fs::write(queue.join("W.free"), &whole).expect("whole");
        let spool = Spool::open(&root).expect("recover");
        assert_eq!(spool.list().expect("list"), vec![short.clone()], "a kept file is never queued");
        assert_eq!(count_queued(&root), 1);
        spool.store(&envelope("N1"), b"n1\r\n").expect("store");
        spool.store(&envelope("N2"), b"n2\r\n").expect("store");
        assert!(!queue.join("P.free").exists() && !queue.join("W.free").exists(), "both reused");
        for (qid, body) in [("N1", "n1"), ("N2", "n2")] {
            let (env, message) = spool.load(qid).expect("load").expect("queued");
            assert_eq!((env.qid.as_str(), message), (qid, format!("{body}\r\n").into_bytes()));
        }
        // A relay that stops drops what it kept; queued messages stay.
        spool.remove("N1").expect("remove");
        assert!(queue.join("N1.free").exists());
        spool.discard_free();
        let mut left: Vec<String> = std::fs::read_dir(&queue)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["N2.queued", "SHORT.queued"]);
        let _ = std::fs::remove_dir_all(&root);
    }

    /// A queue file cut short or with a damaged header is reported and left in place, never
    /// delivered cut, and does not hide the rest of the queue.
    #[test]
    fn damaged_queue_files_are_left_for_a_person() {
        let root = scratch("damaged");
        let spool = Spool::open(&root).expect("open");
        let good = envelope("GOOD");
        spool.store(&good, b"good\r\n").expect("store");
        spool.store(&envelope("CUT"), b"a message that will lose its end\r\n").expect("store");
        let cut = root.join("queue/CUT.queued");
        let bytes = std::fs::read(&cut).expect("read");
        std::fs::write(&cut, &bytes[..bytes.len() - 5]).expect("cut");
        std::fs::write(root.join("queue/JUNK.queued"), b"From: nobody\r\n\r\nnot a queue file\r\n").expect("junk");
        let spool = Spool::open(&root).expect("reopen");
        assert_eq!(spool.list().expect("list"), vec![good]);
        let err = spool.load("CUT").expect_err("a cut file is an error");
        let text = err.to_string();
        match err {
            RelayError::BadQueueFile { path, defect: QueueFileDefect::Length { size, expected } } => {
                assert_eq!((path, size + 5), (cut.clone(), expected));
            }
            other => panic!("expected a cut queue file, got {other:?}"),
        }
        assert!(text.contains("header says") && text.contains("left in place for a person"), "{text}");
        assert!(text.starts_with(&format!("{}: unreadable queue file (", cut.display())), "{text}");
        let err = spool.load("JUNK").expect_err("junk is an error");
        assert!(err.to_string().contains("header line"), "{err}");
        assert!(matches!(err, RelayError::BadQueueFile { defect: QueueFileDefect::NoHeader, .. }), "{err:?}");
        assert!(cut.exists() && root.join("queue/JUNK.queued").exists(), "left in place");
        let _ = std::fs::remove_dir_all(&root);
    }

    /// Spools of the old layout (`.msg` + `.env`) after a crash at each of their steps, and
    /// after a crash at each step of their conversion.
    #[test]
    fn old_two_file_spools_are_converted_whatever_step_they_crashed_in() {
        let root = scratch("old");
        let queue = root.join("queue");
        std::fs::create_dir_all(&queue).expect("dir");
        let json = |qid: &str| {
            format!(
                r#"{{"qid":"{qid}","message_id":"{qid}@x","mail_from":"a@x","pending":["b@y"],"received_at":1.0,"attempts":0,"deliveries":0,"requiretls":true}}"#
            )
        };
        // Receipt crashed before the envelope (never acknowledged): debris.
        std::fs::write(queue.join("RECV.msg"), b"never acknowledged").expect("w");
        // Crashed rewriting an envelope: the old envelope and a temporary file.
        std::fs::write(queue.join("UPD.msg"), b"upd\r\n").expect("w");
        std::fs::write(queue.join("UPD.env"), json("UPD")).expect("w");
        std::fs::write(queue.join("UPD.tmp"), b"{\"qid\":").expect("w");
        // Queued and committed.
        std::fs::write(queue.join("OLD.msg"), b"old\r\n").expect("w");
        std::fs::write(queue.join("OLD.env"), json("OLD")).expect("w");
        // Removal crashed between the envelope and the message: debris.
        std::fs::write(queue.join("GONE.msg"), b"delivered").expect("w");
        // Conversion crashed after the queue file was committed, before `.env` went.
        std::fs::write(queue.join("CONV.msg"), b"conv\r\n").expect("w");
        std::fs::write(queue.join("CONV.env"), json("CONV")).expect("w");
        let conv = encode(&serde_json::from_str(&json("CONV")).expect("env"), b"conv\r\n").expect("encode");
        std::fs::write(queue.join("CONV.queued"), &conv).expect("w");
        // ... and after `.env` went, before `.msg`.
        std::fs::write(queue.join("HALF.msg"), b"half\r\n").expect("w");
        let half = encode(&serde_json::from_str(&json("HALF")).expect("env"), b"half\r\n").expect("encode");
        std::fs::write(queue.join("HALF.queued"), &half).expect("w");
        // An envelope whose message is missing (no step of the old layout leaves this): kept.
        std::fs::write(queue.join("LOST.env"), json("LOST")).expect("w");
        assert_eq!(count_queued(&root), 5, "UPD, OLD, CONV (once), HALF and LOST, before the conversion");

        let spool = Spool::open(&root).expect("open converts");
        let listed: Vec<String> = spool.list().expect("list").into_iter().map(|e| e.qid).collect();
        assert_eq!(listed, ["CONV", "HALF", "OLD", "UPD"]);
        for (qid, body) in [("CONV", "conv"), ("HALF", "half"), ("OLD", "old"), ("UPD", "upd")] {
            let (env, message) = spool.load(qid).expect("load").expect("queued");
            assert_eq!((env.qid.as_str(), env.requiretls), (qid, true));
            assert_eq!(message, format!("{body}\r\n").into_bytes());
        }
        let mut left: Vec<String> = std::fs::read_dir(&queue)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["CONV.queued", "HALF.queued", "LOST.env", "OLD.queued", "UPD.queued"]);
        assert_eq!(count_queued(&root), 5);
        let _ = std::fs::remove_dir_all(&root);
    }

    /// A directory fsync that fails (here: the directory moved away, so it cannot even be
    /// opened) fails its commit and every later one, even once the directory is back: after a
    /// failed fsync, a later success proves nothing.
    #[test]
    fn a_failed_directory_fsync_fails_every_later_commit() {
        let root = scratch("sticky");
        let spool = Spool::open(&root).expect("open");
        spool.store(&envelope("BEFORE"), b"before\r\n").expect("store");
        std::fs::rename(root.join("queue"), root.join("moved")).expect("move away");
        let err = spool.sync.commit().expect_err("no directory to fsync");
        assert!(err.to_string().contains("No such file"), "{err}");
        std::fs::rename(root.join("moved"), root.join("queue")).expect("move back");
        let err = spool.store(&envelope("AFTER"), b"after\r\n").expect_err("sticky");
        assert!(err.to_string().contains("fsync of the spool directory failed"), "{err}");
        assert!(!root.join("queue/AFTER.queued").exists(), "an unacknowledged message is not left queued");
        let err = spool.remove("BEFORE").expect_err("sticky");
        assert!(err.to_string().contains("restarted"), "{err}");
        // A restart recovers what the disk holds.
        let spool = Spool::open(&root).expect("reopen");
        assert!(spool.list().expect("list").is_empty(), "the removal of BEFORE happened; AFTER was taken back");
        spool.store(&envelope("NEW"), b"new\r\n").expect("a fresh spool commits again");
        let _ = std::fs::remove_dir_all(&root);
    }

    /// Many threads storing and removing at once: every commit is served (by no more directory
    /// fsyncs than commits; fewer when they overlap) and everything stored is there to read.
    #[test]
    fn concurrent_stores_and_removes_are_all_committed() {
        let root = scratch("group");
        let spool = std::sync::Arc::new(Spool::open(&root).expect("open"));
        let (before_syncs, before_commits) = spool.sync_counts();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let spool = spool.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let env = envelope(&format!("T{t}N{i}"));
                        spool.store(&env, format!("message {t} {i}\r\n").as_bytes()).expect("store");
                        if i % 2 == 0 {
                            spool.remove(&env.qid).expect("remove");
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let (syncs, commits) = spool.sync_counts();
        assert_eq!(commits - before_commits, 8 * 50 + 8 * 25, "one commit per store and per remove");
        assert!(syncs - before_syncs <= commits - before_commits);
        let listed = spool.list().expect("list");
        assert_eq!(listed.len(), 8 * 25);
        for env in &listed {
            let (_, message) = spool.load(&env.qid).expect("load").expect("queued");
            let (t, i) = env.qid.trim_start_matches('T').split_once('N').expect("qid");
            assert_eq!(message, format!("message {t} {i}\r\n").into_bytes());
        }
        eprintln!("{} directory fsyncs for {} commits", syncs - before_syncs, commits - before_commits);
        let _ = std::fs::remove_dir_all(&root);
    }
}
