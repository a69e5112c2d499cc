//! REQUIRETLS (RFC 8689): a sender's per-message demand that every hop be TLS with an
//! authenticated server, and the `TLS-Required: No` header field that asks the opposite.
//!
//! - Server side (`server`): the `REQUIRETLS` EHLO keyword is offered only inside TLS (§2), and
//!   the `REQUIRETLS` MAIL parameter is accepted only there; the flag is kept in the spooled
//!   envelope ([`crate::spool::Envelope::requiretls`]), so it survives restarts.
//! - Client side (`delivery`): for a flagged message every onward hop must use STARTTLS with a
//!   verified certificate (this relay's `verify`: a chain to the configured CA naming the MX) and
//!   the next hop must offer `REQUIRETLS` after TLS (§4.2.1); the MAIL command then carries the
//!   parameter on. When no MX of the domain meets that, the message bounces (§4.2.1, §5) with
//!   `5.7.10` (TLS could not be had) or `5.7.30` (REQUIRETLS support required, §6); it is never
//!   sent in the clear and never deferred to wait for a better path.
//! - `TLS-Required: No` (§3, §4.2.2) on a message without the REQUIRETLS parameter lowers the
//!   policy for that message to opportunistic (`may`): STARTTLS when offered, any certificate,
//!   plaintext otherwise. A relay set to `none` stays `none`.
//!
//! RFC 8689 §4.2.1 also accepts DANE (RFC 7672) instead of a PKIX chain, and wants the MX lookup
//! secured by DNSSEC or MTA-STS. This relay checks the PKIX chain only; [`HopAuthentication`]
//! is the hook: a hop authenticated by DANE satisfies REQUIRETLS as well (see
//! [`satisfies_requiretls`]).

use crate::config::OutboundTls;

/// The EHLO keyword and the MAIL parameter (RFC 8689 §2).
pub const KEYWORD: &str = proto::server::REQUIRETLS;

/// What a queued message asks of its onward hops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageTls {
    /// Nothing: the relay's own policy for the destination applies.
    Default,
    /// Received with `MAIL FROM:<...> REQUIRETLS`.
    RequireTls,
    /// Carries `TLS-Required: No` (and no REQUIRETLS parameter, which would take precedence).
    NotRequired,
}

impl MessageTls {
    /// The demand of a message from its envelope flag and its header section. RFC 8689 §3: with
    /// the REQUIRETLS parameter present, the header field is ignored.
    pub fn of(requiretls: bool, message: &[u8]) -> Self {
        if requiretls {
            MessageTls::RequireTls
        } else if tls_required_no(message) {
            MessageTls::NotRequired
        } else {
            MessageTls::Default
        }
    }

    /// The outbound policy for this message, given the relay's policy for the destination.
    /// REQUIRETLS is at least `verify`; `TLS-Required: No` is at most `may`.
    pub fn policy(self, configured: OutboundTls) -> OutboundTls {
        match (self, configured) {
            (MessageTls::Default, p) => p,
            (MessageTls::RequireTls, _) => OutboundTls::Verify,
            (MessageTls::NotRequired, OutboundTls::None) => OutboundTls::None,
            (MessageTls::NotRequired, _) => OutboundTls::May,
        }
    }
}

/// How a next hop's server was authenticated. RFC 8689 §4.2.1 accepts either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HopAuthentication {
    /// A certificate chain to a trusted CA naming the MX host (`verify`).
    WebPki,
    /// A certificate matching the MX's DNSSEC-signed TLSA records (RFC 7672); set by the DANE
    /// code when it authenticates a hop.
    Dane,
}

/// Whether a hop authenticated so (or not at all: `None`) may carry a REQUIRETLS message.
pub fn satisfies_requiretls(auth: Option<HopAuthentication>) -> bool {
    matches!(auth, Some(HopAuthentication::WebPki | HopAuthentication::Dane))
}

/// Whether the message's header section has a `TLS-Required` field whose value is `No` (case
/// insensitive, RFC 8689 §3; folded values are unfolded). Only the header section is read.
pub fn tls_required_no(message: &[u8]) -> bool {
    let head_end = message.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(message.len());
    let head = String::from_utf8_lossy(&message[..head_end]);
    let mut fields: Vec<String> = Vec::new();
    for line in head.split("\r\n") {
        match fields.last_mut() {
            Some(last) if line.starts_with([' ', '\t']) => last.push_str(line),
            _ => fields.push(line.to_string()),
        }
    }
    fields.iter().any(|f| {
        f.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("TLS-Required") && value.trim().eq_ignore_ascii_case("no")
        })
    })
}

/// Bounce reasons, with the enhanced status codes RFC 8689 names (`bounce` finds the code in
/// the reason and puts it in the DSN's Status field).
pub fn no_tls(host: &str, why: &str) -> String {
    format!("5.7.10 REQUIRETLS: {host}: {why}; the message requires TLS with an authenticated server on every hop")
}

pub fn no_requiretls(host: &str) -> String {
    format!("5.7.30 REQUIRETLS support required: {host} does not offer REQUIRETLS after STARTTLS")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parameter_wins_over_the_header() {
        let no = b"From: a@x\r\nTLS-Required:  NO \r\nSubject: s\r\n\r\nTLS-Required: yes\r\n";
        assert_eq!(MessageTls::of(false, no), MessageTls::NotRequired);
        assert_eq!(MessageTls::of(true, no), MessageTls::RequireTls);
        assert_eq!(MessageTls::of(false, b"From: a@x\r\n\r\nTLS-Required: No\r\n"), MessageTls::Default, "body");
        let folded = b"From: a@x\r\nTLS-Required:\r\n No\r\n\r\nbody";
        assert_eq!(MessageTls::of(false, folded), MessageTls::NotRequired);
        assert_eq!(MessageTls::of(false, b"TLS-Required: maybe\r\n\r\n"), MessageTls::Default);
    }

    #[test]
    fn policies_per_message() {
        use OutboundTls::*;
        for p in [None, May, Encrypt, Verify] {
            assert_eq!(MessageTls::RequireTls.policy(p), Verify);
            assert_eq!(MessageTls::Default.policy(p), p);
        }
        assert_eq!(MessageTls::NotRequired.policy(Verify), May);
        assert_eq!(MessageTls::NotRequired.policy(Encrypt), May);
        assert_eq!(MessageTls::NotRequired.policy(None), None);
        assert!(proto::server::requiretls_param(&["SIZE=10".into(), "requiretls".into()]));
        assert!(!proto::server::requiretls_param(&["REQUIRETLS=YES".into()]));
        assert!(satisfies_requiretls(Some(HopAuthentication::Dane)) && !satisfies_requiretls(Option::None));
    }
}
