//! The reserved envelope that marks cover traffic ([`crate::cover`]): a cover message goes from
//! and to the local part [`LOCAL_PART`] (`smtplab-cover@<domain>`). The sending relay marks its
//! records by it, and the receiving relay drops the message after its `250` by it.

/// The local part of a cover message's sender and recipient.
pub const LOCAL_PART: &str = "smtplab-cover";

/// Whether `addr` is a cover address (`smtplab-cover@...`, any case).
pub fn is_cover_address(addr: &str) -> bool {
    addr.rsplit_once('@').is_some_and(|(local, _)| local.eq_ignore_ascii_case(LOCAL_PART))
}

/// Whether a transaction to `rcpts` is a cover message: every recipient is a cover address.
pub fn is_cover(rcpts: &[String]) -> bool {
    !rcpts.is_empty() && rcpts.iter().all(|r| is_cover_address(r))
}
