//! Sans-IO SMTP: the codec and the session logic that the relay (which speaks SMTP) and the tap
//! (which overhears it) share: one set of line, reply, DATA and BDAT parsers, the server's
//! side of a session ([`server::ServerSession`]) and the client's mail transaction
//! ([`client::ClientTransaction`]), which the relay drives over sockets and tests drive with byte
//! vectors.
//!
//! Nothing here touches a socket, a clock or a random number generator: callers hand in bytes and
//! get back parsed items. Checked parsing never panics, whatever the input: the tap feeds these
//! parsers bytes straight off the wire, from peers that may be broken or hostile.
//!
//! That promise is held by the compiler, not by `catch_unwind` at the callers: outside tests,
//! indexing, slicing, `unwrap`, `expect` and `panic!` are lint errors in this crate.

#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod client;
pub mod command;
pub mod data;
pub mod ehlo;
pub mod line;
pub mod line_endings;
pub mod reply;
pub mod server;

pub use client::{ClientTransaction, RcptOutcome};
pub use command::{BdatChunk, BdatError, Command, Path};
pub use data::{DataReceiver, DataStatus, dot_stuff};
pub use ehlo::Capabilities;
pub use line::{Line, LineBuffer};
pub use reply::{Reply, ReplyLine, ReplyParser};
pub use server::{ServerConfig, ServerSession};

/// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets including CRLF. Real clients
/// exceed it (long EHLO names, many ESMTP parameters), so callers choose their own limit; this is
/// the relay's default.
pub const MAX_COMMAND_LINE: usize = 4096;
