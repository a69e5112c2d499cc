//! The queue file's header magic and what can be wrong with a queue file's bytes: shared by the
//! spool, which writes and reads queue files (their layout is in [`crate::spool`]), and by
//! [`crate::error::RelayError::BadQueueFile`], which reports a defective one.

/// The first word of a queue file's header line, and the layout's version after it.
pub(crate) const MAGIC: &str = "smtplab-queue 1";

/// What is wrong with a queue file's own bytes (see [`crate::spool`], "Layout").
#[derive(Debug, thiserror::Error)]
pub enum QueueFileDefect {
    #[error("header is not text")]
    HeaderNotText,
    /// No line starting with the format's magic within the first bytes.
    #[error("no `{MAGIC}` header line")]
    NoHeader,
    /// The header line does not hold two lengths (or the envelope's is over its limit).
    #[error("bad header line {line:?}")]
    BadHeader { line: String },
    /// The file is longer or shorter than its header says: cut short, or written over.
    #[error("{size} bytes where the header says {expected}")]
    Length { size: u64, expected: u64 },
    #[error("envelope: {0}")]
    Envelope(#[source] serde_json::Error),
    #[error("no line end after the envelope")]
    NoEnvelopeEnd,
}
