//! The passive eavesdropper: capture, decode, reassemble, and dissect SMTP and the TLS that
//! STARTTLS starts, into the records of `records::TapRecord`.
//!
//! Checked parsing never panics: every byte here comes from the wire or from a file someone
//! else wrote. A malformed packet is counted and skipped; a corrupt file ends the read with an
//! error that names the byte offset, and the records found before it are kept. The lints below
//! hold that promise in the code (outside tests): no indexing or slicing that may panic, no
//! `unwrap`, `expect` or `panic!`.
#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod capture;
pub mod decode;
pub mod defrag;
pub mod dissect;
pub mod error;
pub mod estimate;
pub mod fuzzing;
pub mod pcapfile;
pub mod pcapwrite;
mod read_ahead;
pub mod reassembly;
pub mod smtp;
pub mod table_lines;
pub mod tls;
mod tls_stream;
pub mod unstuff;
pub mod volume;

mod encoded_words;
mod message;
mod mime_body;
mod mime_parts;

pub use capture::{LiveCapture, LiveOptions, PacketStream};
pub use dissect::{
    Dissection, Options, ReadSummary, dissect_bytes, dissect_file, dissect_reader, stream_file, stream_reader,
};
pub use error::TapError;
/// The per-message reading (header fields, subject, attachments) on its own, for the
/// `mime_cost` example that measures it and for tests outside the crate.
pub use message::{full_parses, read_headers};
