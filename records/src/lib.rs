//! The records the stages of smtplab write to the run directory, and read back.
//!
//! Stages talk through these files only (see ARCHITECTURE.md): the relay and the injector write
//! ground truth, the tap writes what the eavesdropper saw, and analysis reads both without
//! importing either. Every record is one JSON object per line; analysis also stores them as
//! Parquet with the same field names.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::Path;

pub mod run_files;
pub use run_files::{
    AccessTap, CaptureStats, DnsSighting, Manifest, PointInfo, RunFileError, RunStatus, SweepEntry, SweepFile,
    SystemInfo, TapLink, read_json_file, read_json_file_opt, write_json_file,
};
pub mod tlsrpt;

/// One message as the traffic generator submitted it: the ground truth of who wrote to whom.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TruthMessage {
    /// Position in the generated sequence (stable for a seed).
    pub seq: u64,
    /// The Message-ID header, without angle brackets; the key that joins every table.
    pub message_id: String,
    pub sender: String,
    pub sender_system: String,
    pub recipients: Vec<String>,
    pub recipient_systems: Vec<String>,
    pub subject: String,
    /// Size of the message as submitted (unstuffed, CRLF line ends).
    pub bytes: u64,
    /// sha256 of the submitted message.
    pub sha256: String,
    /// Seconds after the start of traffic at which the generator scheduled the submission
    /// (Poisson arrivals; 0 for all when traffic is sent as fast as possible). Deterministic for a
    /// seed, and an offset, not a time on the run's clock: the UTC epoch time of the 250 reply is
    /// in `truth/submissions.jsonl` ([`Submission`]). Runs before the rename wrote it as
    /// `submitted_at`, which is still read.
    #[serde(alias = "submitted_at")]
    pub scheduled_at: f64,
    /// The sender asked for REQUIRETLS (RFC 8689): the injector submitted it with
    /// `MAIL FROM:<...> REQUIRETLS`. Absent (false) in runs made before it existed.
    #[serde(default)]
    pub requiretls: bool,
}

/// `truth/submissions.jsonl`: when the sender's system accepted a message (its 250 reply to the
/// end of DATA), on the run's one clock: UTC epoch seconds, as every other time in the truth and
/// the tap's records. Timing, kept apart from the deterministic `truth/messages.jsonl`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Submission {
    /// [`TruthMessage::seq`] of the message.
    pub seq: u64,
    /// UTC epoch seconds.
    pub submitted_at: f64,
}

/// One SMTP session of a relay, inbound or outbound. Outbound sessions between two systems are
/// the "hops" of the ground truth: what really crossed each line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SessionRecord {
    /// `inbound` or `outbound`.
    pub direction: String,
    /// Name of the relay's system.
    pub system: String,
    /// Name of the system at the other end, when known (outbound: the destination).
    pub peer_system: Option<String>,
    pub started_at: f64,
    pub ended_at: f64,
    pub local_addr: String,
    pub peer_addr: String,
    /// The MX host name connected to (outbound) or the reverse name, if any (inbound).
    pub peer_name: Option<String>,
    /// The EHLO/HELO name the client gave.
    pub ehlo_name: Option<String>,
    pub starttls_offered: bool,
    pub starttls_used: bool,
    pub tls_version: Option<String>,
    pub tls_cipher: Option<String>,
    /// Whether the TLS handshake resumed an earlier session (a session ID, ticket or PSK):
    /// outbound, as rustls reports it.
    #[serde(default)]
    pub tls_resumed: bool,
    /// Whether the peer was authenticated: its certificate verified against a CA and name
    /// (outbound `verify`) or matched by its DNSSEC-secure TLSA records (`dane`, `dane-only`).
    pub cert_verified: bool,
    /// Whether the peer was authenticated by DANE (RFC 7672): its certificate matched a usable
    /// TLSA record from a DNSSEC-secure RRset. Absent in records written before DANE: false.
    #[serde(default)]
    pub dane_authenticated: bool,
    /// Why DANE held the session back, as the RFC 8460 result type (`dnssec-invalid`,
    /// `tlsa-invalid`, `dane-required`, `starttls-not-supported`, ...); none otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dane_failure: Option<String>,
    /// The messages moved in this session.
    pub messages: Vec<HopMessage>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Reply codes in order (outbound: received; inbound: sent).
    pub replies: Vec<u16>,
    /// `delivered`, `deferred`, `bounced`, `accepted`, `closed`, `error`.
    pub outcome: String,
    pub error: Option<String>,
    /// Outbound, MTA-STS (RFC 8461): the mode of the policy this delivery was under
    /// (`enforce`, `testing` or `none`); absent when the sender does not honour MTA-STS or the
    /// domain had no policy it could find or had cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mta_sts_mode: Option<String>,
    /// The policy's id (from the `_mta-sts` TXT record when it was fetched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mta_sts_policy_id: Option<String>,
    /// `fetched` (for this delivery) or `cached` (trust on first use at work).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mta_sts_source: Option<String>,
    /// What failed, as an RFC 8460 (TLS-RPT) result type: `sts-policy-fetch-error`,
    /// `sts-policy-invalid`, `sts-webpki-invalid`, `starttls-not-supported`,
    /// `certificate-host-mismatch`, `certificate-expired`, `certificate-not-trusted`,
    /// `validation-failure`. Under `testing` the session went on regardless.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mta_sts_failure: Option<String>,
    /// The failure in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mta_sts_failure_detail: Option<String>,
}

/// One message within a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct HopMessage {
    pub message_id: String,
    pub queue_id: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// Size of the message as it crossed this hop (unstuffed, trace headers included).
    pub bytes: u64,
    /// sha256 of the message as it crossed this hop: what a tap recovering the content hashes.
    pub sha256: String,
    /// Final reply to the end of data.
    pub reply: u16,
    /// A cover message (a countermeasure's dummy, never delivered to a mailbox): the sending
    /// relay made it up, the receiving relay dropped it. Analysis keeps these out of every
    /// count of mail. Absent (false) for mail, and in records written before cover traffic.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cover: bool,
}

/// What the tap reports: both kinds share one JSON-lines stream, told apart by `record`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "lowercase")]
// A serialisation envelope, built and dropped one record at a time: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum TapRecord {
    Session(TapSession),
    Transaction(TapTransaction),
}

/// One TCP session as the eavesdropper saw it: every session the tap sees has one, those that
/// carry no SMTP noted `not_smtp` (or `no_payload`) with their addresses, times and byte counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TapSession {
    pub ts: f64,
    pub uid: String,
    #[serde(rename = "id.orig_h")]
    pub orig_h: String,
    #[serde(rename = "id.orig_p")]
    pub orig_p: u16,
    #[serde(rename = "id.resp_h")]
    pub resp_h: String,
    #[serde(rename = "id.resp_p")]
    pub resp_p: u16,
    pub duration: f64,
    /// The 802.1Q VLAN id the session's frames carried (the outer one under QinQ), as Zeek's
    /// conn.log `vlan`; `None` untagged. Part of what makes a session: on a trunk, the same
    /// addresses and ports on two VLANs are two sessions.
    #[serde(default)]
    pub vlan: Option<u16>,
    /// The inner VLAN id under QinQ, as Zeek's conn.log `inner_vlan`.
    #[serde(default)]
    pub inner_vlan: Option<u16>,
    pub helo: Option<String>,
    /// The name the server gave in its greeting or EHLO reply.
    pub server_name: Option<String>,
    pub starttls_offered: bool,
    /// The client sent STARTTLS.
    pub starttls_command: bool,
    /// The server's reply code to STARTTLS.
    pub starttls_reply: Option<u16>,
    /// A 220 to STARTTLS was followed by TLS: the rest of the session is encrypted.
    pub starttls_used: bool,
    pub tls_version: Option<String>,
    pub tls_cipher: Option<String>,
    /// The ClientHello's server name. As in every name read from the wire here (and
    /// `cert_san_dns`): valid UTF-8 kept, control characters, bytes that are not UTF-8 and `\`
    /// written `\xNN` as Zeek's logs write them, so no control character reaches a terminal.
    pub sni: Option<String>,
    /// TLS versions the client offered (its supported_versions, else the ClientHello version).
    #[serde(default)]
    pub tls_offered_versions: Vec<String>,
    /// Cipher suites the client offered, IANA names (hex for unknown ones).
    #[serde(default)]
    pub tls_offered_ciphers: Vec<String>,
    /// Key-exchange groups the client offered (supported_groups), IANA names or hex.
    #[serde(default)]
    pub tls_offered_groups: Vec<String>,
    /// The key-exchange group the server chose: its TLS 1.3 key_share, or the named curve of a
    /// TLS 1.2 ECDHE ServerKeyExchange. Tells an eavesdropper who records today whether the
    /// session's keys would fall to a future quantum computer (`X25519MLKEM768`: hybrid).
    #[serde(default)]
    pub tls_group: Option<String>,
    /// The server certificate's subject, when sent in the clear (TLS 1.2 and earlier), as
    /// Zeek's x509.log writes it (OpenSSL's RFC 2253 form, `CN=mx.example.org,O=Example,C=US`),
    /// except that characters beyond ASCII are kept (UTF-8) where OpenSSL writes each of their
    /// bytes `\XX` (`tap::tls::openssl_rfc2253` gives that form back). Control characters and
    /// bytes that do not decode are `\XX` (RFC 4514 hex pairs) and a `\` of the value is `\\`,
    /// so the string is unambiguous and holds no control character.
    #[serde(default)]
    pub cert_subject: Option<String>,
    /// The certificate's issuer, written as `cert_subject`.
    #[serde(default)]
    pub cert_issuer: Option<String>,
    /// DNS names of that certificate's subjectAltName, escaped as `sni`.
    #[serde(default)]
    pub cert_san_dns: Vec<String>,
    /// TCP payload bytes each way (originator = client).
    pub orig_bytes: u64,
    pub resp_bytes: u64,
    pub tls_records_orig: u64,
    pub tls_records_resp: u64,
    /// Bytes of TLS application-data records each way: the volume left visible under TLS.
    pub tls_app_bytes_orig: u64,
    pub tls_app_bytes_resp: u64,
    /// Sequence gaps (bytes missing from the capture) each way.
    pub gaps: u64,
    /// Mail transactions seen in the clear.
    pub transactions: u64,
    /// SASL mechanism of an AUTH command seen in the clear (PLAIN, LOGIN, ...).
    #[serde(default)]
    pub auth_mechanism: Option<String>,
    /// The user name, when the mechanism sends it readably (PLAIN, LOGIN, CRAM-MD5, XOAUTH2,
    /// OAUTHBEARER). The password, CRAM-MD5 digest or bearer token is never recorded.
    #[serde(default)]
    pub auth_user: Option<String>,
    /// Credentials crossed the line in the clear (AUTH before any TLS, with PLAIN or LOGIN, or
    /// a bearer token with XOAUTH2 or OAUTHBEARER).
    #[serde(default)]
    pub auth_cleartext: bool,
    /// Oddities worth a researcher's attention, Zeek "weird"-style names.
    pub notes: Vec<String>,
    /// Messages the session carried, as the eavesdropper estimates them: counted from the
    /// transactions read in the clear, or, in TLS, from the shape of the client's bursts of
    /// application-data records between the server's (ANALYSIS.md, "Messages and sizes inside
    /// TLS"). `None` where there is nothing to estimate from (no TLS records, not SMTP).
    #[serde(default)]
    pub est_messages: Option<u64>,
    /// Estimated size of each of those messages, in order, in bytes: in the clear, the
    /// (unstuffed) message the tap read, as far as it saw it; in TLS, the plaintext the client
    /// sent after DATA less the final `.<CRLF>` (so a dot added by dot-stuffing counts).
    #[serde(default)]
    pub est_message_bytes: Vec<u64>,
    /// The application-data records of the session's TLS (STARTTLS or implicit), both
    /// directions in capture order, up to [`MAX_TLS_APP_RECORDS`]; what the estimators read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_app_records: Vec<TlsAppRecord>,
    /// Application-data records past [`MAX_TLS_APP_RECORDS`]: counted, not kept.
    #[serde(default)]
    pub tls_app_records_beyond: u64,
}

/// Application-data records kept per direction of a TLS session (beyond, they are counted):
/// 5,000 records of up to 16 KiB carry about 80 MB, more than the relay's 50 MiB message limit,
/// and hold 80 KB of memory while the session is read.
pub const MAX_TLS_APP_RECORDS: usize = 5_000;

/// One TLS application-data record (content type 23) as an eavesdropper sees it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct TlsAppRecord {
    /// Capture time (UTC epoch seconds) of the packet that completed the record.
    pub ts: f64,
    /// Sent by the client (the session's originator); otherwise by the server.
    pub orig: bool,
    /// Bytes of the record on the wire, its 5-byte header included.
    pub len: u32,
}

/// One mail transaction recovered in the clear, with Zeek smtp.log field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TapTransaction {
    pub ts: f64,
    pub uid: String,
    #[serde(rename = "id.orig_h")]
    pub orig_h: String,
    #[serde(rename = "id.orig_p")]
    pub orig_p: u16,
    #[serde(rename = "id.resp_h")]
    pub resp_h: String,
    #[serde(rename = "id.resp_p")]
    pub resp_p: u16,
    pub trans_depth: u32,
    pub helo: Option<String>,
    pub mailfrom: Option<String>,
    pub rcptto: Vec<String>,
    pub date: Option<String>,
    pub from: Option<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub reply_to: Option<String>,
    pub msg_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub subject: Option<String>,
    pub x_originating_ip: Option<String>,
    pub first_received: Option<String>,
    pub second_received: Option<String>,
    pub last_reply: Option<String>,
    /// Addresses along the path: the responder and originator, then the Received chain.
    pub path: Vec<String>,
    pub user_agent: Option<String>,
    /// The transaction happened inside TLS (never true for a recovered one; kept for Zeek parity).
    pub tls: bool,
    /// Size of the unstuffed message; absent when no message content was seen.
    pub message_bytes: Option<u64>,
    /// sha256 of the unstuffed message, when it was recovered whole.
    pub sha256: Option<String>,
    pub attachments: Vec<Attachment>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Attachment {
    pub name: Option<String>,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
}

/// One SMTP session that an active attacker on the path received (`truth/attacker.jsonl`): the
/// attacker's own ground truth of what it read, to be joined with the relays' records by message.
/// Sessions the attacker let through untouched are listed too (`attacked = false`), so the
/// truth says how much of the targeted traffic it had in hand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AttackerSession {
    /// The attacker's name in the scenario.
    pub attacker: String,
    /// `strip`, `strip-xxxxxxxa`, `454`, `fake-mx`, `inject-command` or `inject-response`.
    pub attack: String,
    /// fake-mx only: `self-signed`, `wrong-name` or `compromised-ca`.
    pub certificate: Option<String>,
    pub started_at: f64,
    pub ended_at: f64,
    /// The system that connected (the victim), named from its address.
    pub victim_system: Option<String>,
    pub victim_addr: String,
    /// The attacker's own address the victim connected to.
    pub local_addr: String,
    /// The domain whose MX the victim meant to reach, and the system that owns it.
    pub target_domain: String,
    pub target_system: String,
    /// The real MX the attacker relayed to.
    pub upstream_addr: String,
    /// False: the session was passed through byte for byte (before the attack's start, outside
    /// its share, or from a victim outside its targeted links); nothing was read.
    pub attacked: bool,
    /// The victim spoke TLS with the attacker (fake-mx: the victim accepted its certificate).
    pub victim_tls: bool,
    /// The attacker's onward leg to the real MX was encrypted.
    pub upstream_tls: bool,
    /// The attacker read an envelope (MAIL FROM) in the clear.
    pub read_envelope: bool,
    /// The attacker read at least one whole message.
    pub read_content: bool,
    pub messages: Vec<AttackerMessage>,
    /// `passed`, `relayed` (to QUIT), `victim-left` (the victim hung up first, e.g. its policy
    /// required the TLS the attacker withheld), `victim-refused-tls` (the victim's handshake with
    /// the attacker's certificate failed), `injection-refused` (inject-command: the real MX did
    /// not answer STARTTLS and the commands behind it with `220`; inject-response: the victim
    /// did not start its TLS handshake after the `220` and the reply behind it),
    /// `injection-not-refused` (the attacked side went on into TLS with the injected bytes in
    /// place; the attacker then copied the end-to-end TLS, unread), `error`.
    pub outcome: String,
    pub error: Option<String>,
    /// inject-command and inject-response: what the attacker injected, as text (the commands
    /// it wrote behind the victim's STARTTLS, or the reply it wrote behind the real MX's `220`);
    /// none for the other attacks and for sessions where the victim never said STARTTLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injected: Option<String>,
    /// Whether the attacked side refused the injection: inject-command, the real MX did not
    /// answer `220` to STARTTLS with the injected commands behind it (smtplab's relay answers
    /// `554` and closes, the CVE-2011-0411 defence); inject-response, the victim did not start
    /// a TLS handshake after the `220` with the injected reply behind it. `false` says only that
    /// TLS went ahead: whether the peer then believed the injected bytes happens inside the
    /// end-to-end TLS, which the attacker cannot read. None when nothing was injected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injection_refused: Option<bool>,
    /// What the attacker saw of the reaction, in a few words: `554 reply and close`,
    /// `victim hung up before TLS`, `TLS handshake`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injection_reaction: Option<String>,
}

/// One message an attacker read whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AttackerMessage {
    /// The Message-ID header, without angle brackets, when the message has one.
    pub message_id: Option<String>,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// Size of the unstuffed message as the victim sent it.
    pub bytes: u64,
    /// sha256 of that message: equal to the sending relay's `HopMessage::sha256` for this hop.
    pub sha256: String,
    /// The real MX's reply to the end of data, passed on to the victim.
    pub reply: u16,
}

/// A JSON-lines file could not be read: which file, which line, and why.
/// One row of the tap's system-to-system volume table: what the eavesdropper learns of an
/// ordered pair of endpoints even when every session is encrypted (`volume.parquet` of
/// `smtplab tap --format parquet`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRow {
    pub client: String,
    pub server: String,
    pub sessions: u64,
    pub starttls_sessions: u64,
    /// TCP payload bytes client to server, and back.
    pub orig_bytes: u64,
    pub resp_bytes: u64,
    /// Mail transactions seen in the clear.
    pub transactions: u64,
    /// Names the eavesdropper can tie to the endpoints: EHLO, the server's banner/EHLO reply,
    /// the TLS SNI, the certificate's DNS names (TLS 1.2 sends it in the clear).
    pub helo_names: Vec<String>,
    pub server_names: Vec<String>,
    pub sni: Vec<String>,
    pub cert_names: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}:{line}: not a valid record ({source}); the file may be truncated or from another tool")]
    Parse { path: String, line: usize, source: serde_json::Error },
}

/// Reads every record of a JSON-lines file. Blank lines are skipped.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, RecordError> {
    JsonlChunks::open(path)?.next_chunk(usize::MAX)
}

/// Reads a JSON-lines file a chunk of records at a time, so a file larger than memory can be
/// converted; errors are those of [`read_jsonl`], with the same line numbers.
pub struct JsonlChunks<T> {
    name: String,
    lines: std::io::Lines<std::io::BufReader<std::fs::File>>,
    /// Lines read so far (blank ones included), for error messages.
    line: usize,
    _records: std::marker::PhantomData<T>,
}

impl<T: serde::de::DeserializeOwned> JsonlChunks<T> {
    pub fn open(path: &Path) -> Result<Self, RecordError> {
        let name = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|source| RecordError::Io { path: name.clone(), source })?;
        Ok(Self { name, lines: std::io::BufReader::new(file).lines(), line: 0, _records: std::marker::PhantomData })
    }

    /// The next (up to) `n` records; empty at the end of the file.
    pub fn next_chunk(&mut self, n: usize) -> Result<Vec<T>, RecordError> {
        let mut out = Vec::with_capacity(n.min(1 << 16));
        while out.len() < n {
            let Some(line) = self.lines.next() else { break };
            self.line += 1;
            let line = line.map_err(|source| RecordError::Io { path: self.name.clone(), source })?;
            if line.trim().is_empty() {
                continue;
            }
            let rec = serde_json::from_str(&line).map_err(|source| RecordError::Parse {
                path: self.name.clone(),
                line: self.line,
                source,
            })?;
            out.push(rec);
        }
        Ok(out)
    }
}

/// Writes records as JSON lines, replacing the file.
pub fn write_jsonl<T: Serialize>(path: &Path, records: &[T]) -> Result<(), RecordError> {
    let name = path.display().to_string();
    let io = |source| RecordError::Io { path: name.clone(), source };
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    for r in records {
        // Serializing these plain structs cannot fail: no maps with non-string keys.
        let line = serde_json::to_string(r).map_err(|e| RecordError::Io { path: name.clone(), source: e.into() })?;
        writeln!(w, "{line}").map_err(|source| RecordError::Io { path: name.clone(), source })?;
    }
    w.flush().map_err(|source| RecordError::Io { path: name.clone(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_records_carry_kind_and_zeek_names() {
        let s = TapRecord::Session(TapSession { orig_h: "127.0.1.1".into(), orig_p: 40000, ..Default::default() });
        let j = serde_json::to_value(&s).expect("serializable");
        assert_eq!(j["record"], "session");
        assert_eq!(j["id.orig_h"], "127.0.1.1");
        let back: TapRecord = serde_json::from_value(j).expect("round trip");
        assert_eq!(back, s);
    }

    #[test]
    fn sessions_written_before_the_tls_details_still_read() {
        let mut j = serde_json::to_value(TapRecord::Session(TapSession::default())).expect("serializable");
        let obj = j.as_object_mut().expect("an object");
        for k in [
            "vlan",
            "inner_vlan",
            "tls_offered_versions",
            "tls_offered_ciphers",
            "tls_offered_groups",
            "tls_group",
            "cert_subject",
            "cert_issuer",
            "cert_san_dns",
            "auth_mechanism",
            "auth_user",
            "auth_cleartext",
        ] {
            assert!(obj.remove(k).is_some(), "{k} is a field");
        }
        let back: TapRecord = serde_json::from_value(j).expect("older records read");
        assert_eq!(back, TapRecord::Session(TapSession::default()));
    }

    #[test]
    fn attacker_sessions_written_before_injection_attacks_still_read() {
        let injected = AttackerSession {
            attack: "inject-command".into(),
            injected: Some("MAIL FROM:<a@b.example>\r\n".into()),
            injection_refused: Some(true),
            injection_reaction: Some("554 reply and close".into()),
            ..Default::default()
        };
        let mut j = serde_json::to_value(&injected).expect("serializable");
        let obj = j.as_object_mut().expect("an object");
        for k in ["injected", "injection_refused", "injection_reaction"] {
            assert!(obj.remove(k).is_some(), "{k} is a field");
        }
        let back: AttackerSession = serde_json::from_value(j).expect("older records read");
        assert_eq!(back, AttackerSession { attack: "inject-command".into(), ..Default::default() });
        // Other attacks' records do not carry the fields at all.
        let plain = serde_json::to_value(AttackerSession::default()).expect("serializable");
        assert!(plain.get("injected").is_none() && plain.get("injection_refused").is_none(), "{plain}");
    }

    #[test]
    fn bad_line_names_file_and_line() {
        let dir = std::env::temp_dir().join(format!("records-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let p = dir.join("x.jsonl");
        std::fs::write(&p, "{\"seq\":1}\n\nnot json\n").expect("write");
        let err = read_jsonl::<serde_json::Value>(&p).expect_err("line 3 is bad");
        assert!(err.to_string().contains("x.jsonl:3:"), "{err}");
        let mut chunks = JsonlChunks::<serde_json::Value>::open(&p).expect("open");
        let first = chunks.next_chunk(1).expect("line 1 is good");
        assert_eq!(first.len(), 1);
        let err = chunks.next_chunk(5).expect_err("line 3 is bad");
        assert!(err.to_string().contains("x.jsonl:3:"), "{err}");
    }
}
