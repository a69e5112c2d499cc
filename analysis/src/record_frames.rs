//! Turns the JSON-lines records into polars tables, column by column.
//!
//! Built from the Rust structs rather than with a JSON reader so that every column has a fixed
//! type even when a file is empty (an empty tap log must still give a table with the right
//! schema), and so that row order is exactly input order.
//!
//! Type choices: ports and other small integers are widened to `UInt32` (the polars build here has
//! no 16-bit integer type), optional fields are nullable columns, lists of strings are
//! `List(String)` columns.

use polars::prelude::*;
use records::{SessionRecord, Submission, SystemInfo, TapSession, TapTransaction, TruthMessage};

/// The value of `direction` that marks a relay-to-relay hop in `truth/sessions.jsonl`.
pub const OUTBOUND: &str = "outbound";

/// `truth/messages.parquet`: one row per submitted message; `recipients` and
/// `recipient_systems` are `List(String)`.
pub fn truth_messages_frame(messages: &[TruthMessage]) -> PolarsResult<DataFrame> {
    DataFrame::new(vec![
        Column::new("seq".into(), messages.iter().map(|m| m.seq).collect::<Vec<_>>()),
        str_col("message_id", messages.iter().map(|m| m.message_id.as_str())),
        str_col("sender", messages.iter().map(|m| m.sender.as_str())),
        str_col("sender_system", messages.iter().map(|m| m.sender_system.as_str())),
        str_list_col("recipients", messages.iter().map(|m| Some(m.recipients.as_slice()))),
        str_list_col("recipient_systems", messages.iter().map(|m| Some(m.recipient_systems.as_slice()))),
        str_col("subject", messages.iter().map(|m| m.subject.as_str())),
        Column::new("bytes".into(), messages.iter().map(|m| m.bytes).collect::<Vec<_>>()),
        str_col("sha256", messages.iter().map(|m| m.sha256.as_str())),
        Column::new("scheduled_at".into(), messages.iter().map(|m| m.scheduled_at).collect::<Vec<_>>()),
    ])
}

/// `truth/submissions.parquet`: when each message was accepted on submission, UTC epoch
/// seconds (the clock of every other time in the truth and the tap's records).
pub fn truth_submissions_frame(submissions: &[Submission]) -> PolarsResult<DataFrame> {
    DataFrame::new(vec![
        Column::new("seq".into(), submissions.iter().map(|s| s.seq).collect::<Vec<_>>()),
        Column::new("submitted_at".into(), submissions.iter().map(|s| s.submitted_at).collect::<Vec<_>>()),
    ])
}

/// One row of `truth/hops.parquet` before it becomes columns.
struct HopRow<'a> {
    session_index: u64,
    session: &'a SessionRecord,
    message: Option<&'a records::HopMessage>,
}

/// A socket address's host (written as the tap writes it: IPv6 without brackets) and port, or
/// `None` when the text is not a socket address.
fn endpoint(addr: &str) -> Option<(String, u32)> {
    let parsed: std::net::SocketAddr = addr.parse().ok()?;
    Some((parsed.ip().to_string(), u32::from(parsed.port())))
}

/// `truth/hops.parquet`: one row per (outbound session, message moved in it).
///
/// An outbound session that moved no message (refused connection, deferral before DATA) still
/// gets one row, with null message columns, so that the true session count of a link is right
/// and a tap session of that connection is still attributed to its link. `session_index` is the
/// 0-based position of the session in `truth/sessions.jsonl`, to tell sessions apart.
/// `client_host`/`client_port`/`server_host`/`server_port` are the two ends parsed, the way the
/// tap's `id.*` columns write them, so hops join tap records without building strings.
pub fn truth_hops_frame(sessions: &[SessionRecord]) -> PolarsResult<DataFrame> {
    truth_hops_frame_from(sessions, 0)
}

/// [`truth_hops_frame`] of a part of `truth/sessions.jsonl` whose first record is at position
/// `first` of the file (ingest converts the file a chunk at a time).
pub fn truth_hops_frame_from(sessions: &[SessionRecord], first: u64) -> PolarsResult<DataFrame> {
    let rows: Vec<HopRow<'_>> = sessions
        .iter()
        .enumerate()
        .filter(|(_, s)| s.direction == OUTBOUND)
        .flat_map(|(i, s)| {
            let session_index = first + i as u64;
            let with_messages = s.messages.iter().map(move |m| HopRow { session_index, session: s, message: Some(m) });
            let without = s.messages.is_empty().then_some(HopRow { session_index, session: s, message: None });
            with_messages.chain(without)
        })
        .collect();
    DataFrame::new(vec![
        Column::new("session_index".into(), rows.iter().map(|r| r.session_index).collect::<Vec<_>>()),
        str_col("sender_system", rows.iter().map(|r| r.session.system.as_str())),
        opt_str_col("receiver_system", rows.iter().map(|r| r.session.peer_system.as_deref())),
        str_col("client_addr", rows.iter().map(|r| r.session.local_addr.as_str())),
        str_col("server_addr", rows.iter().map(|r| r.session.peer_addr.as_str())),
        opt_string_col("client_host", rows.iter().map(|r| endpoint(&r.session.local_addr).map(|e| e.0))),
        Column::new(
            "client_port".into(),
            rows.iter().map(|r| endpoint(&r.session.local_addr).map(|e| e.1)).collect::<Vec<_>>(),
        ),
        opt_string_col("server_host", rows.iter().map(|r| endpoint(&r.session.peer_addr).map(|e| e.0))),
        Column::new(
            "server_port".into(),
            rows.iter().map(|r| endpoint(&r.session.peer_addr).map(|e| e.1)).collect::<Vec<_>>(),
        ),
        Column::new("starttls_used".into(), rows.iter().map(|r| r.session.starttls_used).collect::<Vec<_>>()),
        opt_str_col("tls_version", rows.iter().map(|r| r.session.tls_version.as_deref())),
        opt_str_col("message_id", rows.iter().map(|r| r.message.map(|m| m.message_id.as_str()))),
        opt_str_col("mail_from", rows.iter().map(|r| r.message.map(|m| m.mail_from.as_str()))),
        str_list_col("rcpt_to", rows.iter().map(|r| r.message.map(|m| m.rcpt_to.as_slice()))),
        Column::new("bytes".into(), rows.iter().map(|r| r.message.map(|m| m.bytes)).collect::<Vec<_>>()),
        opt_str_col("sha256", rows.iter().map(|r| r.message.map(|m| m.sha256.as_str()))),
        // A cover message (a countermeasure's dummy): on the wire, never mail.
        Column::new("cover".into(), rows.iter().map(|r| r.message.is_some_and(|m| m.cover)).collect::<Vec<_>>()),
        str_col("outcome", rows.iter().map(|r| r.session.outcome.as_str())),
        opt_str_col("mta_sts_mode", rows.iter().map(|r| r.session.mta_sts_mode.as_deref())),
        opt_str_col("mta_sts_failure", rows.iter().map(|r| r.session.mta_sts_failure.as_deref())),
        Column::new("started_at".into(), rows.iter().map(|r| r.session.started_at).collect::<Vec<_>>()),
        Column::new("ended_at".into(), rows.iter().map(|r| r.session.ended_at).collect::<Vec<_>>()),
    ])
}

/// What a relay's `local` session records say became of a recipient's copy.
pub const DELIVERED: &str = "delivered";
pub const BOUNCED: &str = "bounced";
/// Neither delivered nor bounced when the run ended: still queued (a `encrypt` sender facing a
/// system without STARTTLS, a drain timeout), or lost.
pub const UNDELIVERED: &str = "undelivered";
/// A run made before the relays recorded outcomes (`manifest.json` lacks `truth_outcomes`).
pub const UNKNOWN: &str = "unknown";

/// The relays' final word on each recipient copy, gathered from the `local` rows of
/// `truth/sessions.jsonl` (one per attempt that delivered into mailboxes or gave up on
/// recipients). Small: one entry per copy, not per session.
pub struct FinalOutcomes {
    recorded: bool,
    ended: std::collections::HashMap<(String, String), FinalOutcome>,
}

struct FinalOutcome {
    outcome: String,
    system: String,
    at: f64,
    reason: Option<String>,
}

impl FinalOutcomes {
    /// `recorded`: the run's relays wrote these rows (its manifest says `truth_outcomes`);
    /// without it every outcome is `unknown`.
    pub fn new(recorded: bool) -> Self {
        FinalOutcomes { recorded, ended: Default::default() }
    }

    pub fn add(&mut self, s: &SessionRecord) {
        if s.direction != "local" || (s.outcome != DELIVERED && s.outcome != BOUNCED) {
            return;
        }
        for m in &s.messages {
            for r in &m.rcpt_to {
                // The first final word stands: a restarted relay may say it again.
                self.ended.entry((m.message_id.clone(), r.clone())).or_insert_with(|| FinalOutcome {
                    outcome: s.outcome.clone(),
                    system: s.system.clone(),
                    at: s.ended_at,
                    reason: s.error.clone(),
                });
            }
        }
    }

    fn get(&self, message_id: &str, recipient: &str) -> Option<&FinalOutcome> {
        self.ended.get(&(message_id.to_string(), recipient.to_string()))
    }
}

/// `truth/outcomes.parquet`: one row per (submitted message, recipient), where its copy ended:
/// `outcome` is `delivered` (into a mailbox of `system` at `at`), `bounced` (given up by
/// `system`, `reason` from its last attempt), `undelivered` (nothing final when the run ended),
/// or `unknown` (the run's relays did not record outcomes). A copy handed to the next hop is
/// not final: it is followed there.
pub fn truth_outcomes_frame(messages: &[TruthMessage], finals: &FinalOutcomes) -> PolarsResult<DataFrame> {
    let unended = if finals.recorded { UNDELIVERED } else { UNKNOWN };
    struct Row<'a> {
        message: &'a TruthMessage,
        recipient: &'a str,
        end: Option<&'a FinalOutcome>,
    }
    let rows: Vec<Row<'_>> = messages
        .iter()
        .flat_map(|m| {
            m.recipients.iter().map(|r| Row { message: m, recipient: r.as_str(), end: finals.get(&m.message_id, r) })
        })
        .collect();
    DataFrame::new(vec![
        Column::new("seq".into(), rows.iter().map(|r| r.message.seq).collect::<Vec<_>>()),
        str_col("message_id", rows.iter().map(|r| r.message.message_id.as_str())),
        str_col("sender_system", rows.iter().map(|r| r.message.sender_system.as_str())),
        str_col("recipient", rows.iter().map(|r| r.recipient)),
        str_col("outcome", rows.iter().map(|r| r.end.map_or(unended, |e| e.outcome.as_str()))),
        opt_str_col("system", rows.iter().map(|r| r.end.map(|e| e.system.as_str()))),
        Column::new("at".into(), rows.iter().map(|r| r.end.map(|e| e.at)).collect::<Vec<_>>()),
        opt_str_col("reason", rows.iter().map(|r| r.end.and_then(|e| e.reason.as_deref()))),
    ])
}

/// `truth/systems.parquet`: the systems of the scenario, TLS policies with defaults filled in.
pub fn systems_frame(systems: &[SystemInfo]) -> PolarsResult<DataFrame> {
    DataFrame::new(vec![
        str_col("name", systems.iter().map(|s| s.name.as_str())),
        str_col("domain", systems.iter().map(|s| s.domain.as_str())),
        str_col("address", systems.iter().map(|s| s.address.as_str())),
        Column::new("starttls".into(), systems.iter().map(|s| s.starttls).collect::<Vec<_>>()),
        opt_str_col("mx", systems.iter().map(|s| s.mx.as_deref())),
        str_col("inbound_tls", systems.iter().map(SystemInfo::inbound)),
        str_col("outbound_tls", systems.iter().map(SystemInfo::outbound)),
        Column::new("mta_sts".into(), systems.iter().map(|s| s.mta_sts).collect::<Vec<_>>()),
    ])
}

/// `tap/sessions.parquet`: every field of [`TapSession`] under its JSON name; `notes`, the
/// offered TLS versions, ciphers and groups, and `cert_san_dns` are `List(String)`.
pub fn tap_sessions_frame(sessions: &[TapSession]) -> PolarsResult<DataFrame> {
    let s = sessions;
    DataFrame::new(vec![
        Column::new("ts".into(), s.iter().map(|x| x.ts).collect::<Vec<_>>()),
        str_col("uid", s.iter().map(|x| x.uid.as_str())),
        str_col("id.orig_h", s.iter().map(|x| x.orig_h.as_str())),
        Column::new("id.orig_p".into(), s.iter().map(|x| u32::from(x.orig_p)).collect::<Vec<_>>()),
        str_col("id.resp_h", s.iter().map(|x| x.resp_h.as_str())),
        Column::new("id.resp_p".into(), s.iter().map(|x| u32::from(x.resp_p)).collect::<Vec<_>>()),
        Column::new("duration".into(), s.iter().map(|x| x.duration).collect::<Vec<_>>()),
        opt_str_col("helo", s.iter().map(|x| x.helo.as_deref())),
        opt_str_col("server_name", s.iter().map(|x| x.server_name.as_deref())),
        Column::new("starttls_offered".into(), s.iter().map(|x| x.starttls_offered).collect::<Vec<_>>()),
        Column::new("starttls_command".into(), s.iter().map(|x| x.starttls_command).collect::<Vec<_>>()),
        Column::new("starttls_reply".into(), s.iter().map(|x| x.starttls_reply.map(u32::from)).collect::<Vec<_>>()),
        Column::new("vlan".into(), s.iter().map(|x| x.vlan.map(u32::from)).collect::<Vec<_>>()),
        Column::new("inner_vlan".into(), s.iter().map(|x| x.inner_vlan.map(u32::from)).collect::<Vec<_>>()),
        Column::new("starttls_used".into(), s.iter().map(|x| x.starttls_used).collect::<Vec<_>>()),
        opt_str_col("tls_version", s.iter().map(|x| x.tls_version.as_deref())),
        opt_str_col("tls_cipher", s.iter().map(|x| x.tls_cipher.as_deref())),
        opt_str_col("sni", s.iter().map(|x| x.sni.as_deref())),
        str_list_col("tls_offered_versions", s.iter().map(|x| Some(x.tls_offered_versions.as_slice()))),
        str_list_col("tls_offered_ciphers", s.iter().map(|x| Some(x.tls_offered_ciphers.as_slice()))),
        str_list_col("tls_offered_groups", s.iter().map(|x| Some(x.tls_offered_groups.as_slice()))),
        opt_str_col("tls_group", s.iter().map(|x| x.tls_group.as_deref())),
        opt_str_col("cert_subject", s.iter().map(|x| x.cert_subject.as_deref())),
        opt_str_col("cert_issuer", s.iter().map(|x| x.cert_issuer.as_deref())),
        str_list_col("cert_san_dns", s.iter().map(|x| Some(x.cert_san_dns.as_slice()))),
        Column::new("orig_bytes".into(), s.iter().map(|x| x.orig_bytes).collect::<Vec<_>>()),
        Column::new("resp_bytes".into(), s.iter().map(|x| x.resp_bytes).collect::<Vec<_>>()),
        Column::new("tls_records_orig".into(), s.iter().map(|x| x.tls_records_orig).collect::<Vec<_>>()),
        Column::new("tls_records_resp".into(), s.iter().map(|x| x.tls_records_resp).collect::<Vec<_>>()),
        Column::new("tls_app_bytes_orig".into(), s.iter().map(|x| x.tls_app_bytes_orig).collect::<Vec<_>>()),
        Column::new("tls_app_bytes_resp".into(), s.iter().map(|x| x.tls_app_bytes_resp).collect::<Vec<_>>()),
        Column::new("gaps".into(), s.iter().map(|x| x.gaps).collect::<Vec<_>>()),
        Column::new("transactions".into(), s.iter().map(|x| x.transactions).collect::<Vec<_>>()),
        opt_str_col("auth_mechanism", s.iter().map(|x| x.auth_mechanism.as_deref())),
        opt_str_col("auth_user", s.iter().map(|x| x.auth_user.as_deref())),
        Column::new("auth_cleartext".into(), s.iter().map(|x| x.auth_cleartext).collect::<Vec<_>>()),
        str_list_col("notes", s.iter().map(|x| Some(x.notes.as_slice()))),
        Column::new("est_messages".into(), s.iter().map(|x| x.est_messages).collect::<Vec<_>>()),
        u64_list_col("est_message_bytes", s.iter().map(|x| x.est_message_bytes.as_slice())),
        Column::new("tls_app_records_beyond".into(), s.iter().map(|x| x.tls_app_records_beyond).collect::<Vec<_>>()),
    ])
}

/// `tap/tls_records.parquet`: one row per TLS application-data record of each session
/// (`tls_app_records` of the session records, which `tap/sessions.parquet` leaves out): `uid`,
/// `seq` (the record's place in its session, from 0, both directions in capture order),
/// `ts`, `orig` (sent by the client) and `len` (bytes on the wire, header included).
pub fn tap_tls_records_frame(sessions: &[TapSession]) -> PolarsResult<DataFrame> {
    let rows = sessions.iter().flat_map(|s| s.tls_app_records.iter().enumerate().map(move |(i, r)| (s, i, r)));
    let (mut uid, mut seq, mut ts, mut orig, mut len) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (s, i, r) in rows {
        uid.push(s.uid.as_str());
        seq.push(i as u32);
        ts.push(r.ts);
        orig.push(r.orig);
        len.push(r.len);
    }
    DataFrame::new(vec![
        Column::new("uid".into(), uid),
        Column::new("seq".into(), seq),
        Column::new("ts".into(), ts),
        Column::new("orig".into(), orig),
        Column::new("len".into(), len),
    ])
}

/// `tap/transactions.parquet`: every field of [`TapTransaction`] under its JSON name; lists of
/// addresses are `List(String)`, and the nested `attachments` become `attachment_count` plus
/// `attachments_json` (the JSON array as the tap wrote it).
pub fn tap_transactions_frame(transactions: &[TapTransaction]) -> PolarsResult<DataFrame> {
    let t = transactions;
    let attachments_json = t
        .iter()
        .map(|x| serde_json::to_string(&x.attachments))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PolarsError::ComputeError(format!("attachments to JSON: {e}").into()))?;
    DataFrame::new(vec![
        Column::new("ts".into(), t.iter().map(|x| x.ts).collect::<Vec<_>>()),
        str_col("uid", t.iter().map(|x| x.uid.as_str())),
        str_col("id.orig_h", t.iter().map(|x| x.orig_h.as_str())),
        Column::new("id.orig_p".into(), t.iter().map(|x| u32::from(x.orig_p)).collect::<Vec<_>>()),
        str_col("id.resp_h", t.iter().map(|x| x.resp_h.as_str())),
        Column::new("id.resp_p".into(), t.iter().map(|x| u32::from(x.resp_p)).collect::<Vec<_>>()),
        Column::new("trans_depth".into(), t.iter().map(|x| x.trans_depth).collect::<Vec<_>>()),
        opt_str_col("helo", t.iter().map(|x| x.helo.as_deref())),
        opt_str_col("mailfrom", t.iter().map(|x| x.mailfrom.as_deref())),
        str_list_col("rcptto", t.iter().map(|x| Some(x.rcptto.as_slice()))),
        opt_str_col("date", t.iter().map(|x| x.date.as_deref())),
        opt_str_col("from", t.iter().map(|x| x.from.as_deref())),
        str_list_col("to", t.iter().map(|x| Some(x.to.as_slice()))),
        str_list_col("cc", t.iter().map(|x| Some(x.cc.as_slice()))),
        opt_str_col("reply_to", t.iter().map(|x| x.reply_to.as_deref())),
        opt_str_col("msg_id", t.iter().map(|x| x.msg_id.as_deref())),
        opt_str_col("in_reply_to", t.iter().map(|x| x.in_reply_to.as_deref())),
        opt_str_col("subject", t.iter().map(|x| x.subject.as_deref())),
        opt_str_col("x_originating_ip", t.iter().map(|x| x.x_originating_ip.as_deref())),
        opt_str_col("first_received", t.iter().map(|x| x.first_received.as_deref())),
        opt_str_col("second_received", t.iter().map(|x| x.second_received.as_deref())),
        opt_str_col("last_reply", t.iter().map(|x| x.last_reply.as_deref())),
        str_list_col("path", t.iter().map(|x| Some(x.path.as_slice()))),
        opt_str_col("user_agent", t.iter().map(|x| x.user_agent.as_deref())),
        Column::new("tls".into(), t.iter().map(|x| x.tls).collect::<Vec<_>>()),
        Column::new("message_bytes".into(), t.iter().map(|x| x.message_bytes).collect::<Vec<_>>()),
        opt_str_col("sha256", t.iter().map(|x| x.sha256.as_deref())),
        Column::new("attachment_count".into(), t.iter().map(|x| x.attachments.len() as u64).collect::<Vec<_>>()),
        Column::new("attachments_json".into(), attachments_json),
    ])
}

/// A non-null `String` column.
pub(crate) fn str_col<'a>(name: &str, values: impl Iterator<Item = &'a str>) -> Column {
    Column::new(name.into(), values.collect::<Vec<&str>>())
}

/// A nullable `String` column.
fn opt_str_col<'a>(name: &str, values: impl Iterator<Item = Option<&'a str>>) -> Column {
    Column::new(name.into(), values.collect::<Vec<Option<&str>>>())
}

/// A nullable `String` column from owned values.
fn opt_string_col(name: &str, values: impl Iterator<Item = Option<String>>) -> Column {
    Column::new(name.into(), values.collect::<Vec<Option<String>>>())
}

/// A `List(String)` column; `None` rows are null lists. The inner type is fixed even when there
/// are no rows, which inferring from values could not do.
pub(crate) fn str_list_col<'a>(name: &str, values: impl ExactSizeIterator<Item = Option<&'a [String]>>) -> Column {
    let mut builder = ListStringChunkedBuilder::new(name.into(), values.len(), values.len() * 2);
    for value in values {
        match value {
            Some(items) => builder.append_values_iter(items.iter().map(String::as_str)),
            None => builder.append_null(),
        }
    }
    builder.finish().into_series().into()
}

/// A `List(UInt64)` column, its inner type fixed even when there are no rows.
fn u64_list_col<'a>(name: &str, values: impl ExactSizeIterator<Item = &'a [u64]>) -> Column {
    let mut builder =
        ListPrimitiveChunkedBuilder::<UInt64Type>::new(name.into(), values.len(), values.len() * 2, DataType::UInt64);
    for value in values {
        builder.append_slice(value);
    }
    builder.finish().into_series().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The attack matrix's defense label: the outbound policy, `+mta-sts` when honoured.
    #[test]
    fn defense_labels() {
        let sys = |outbound: Option<&str>, mta_sts: bool| SystemInfo {
            starttls: true,
            outbound_tls: outbound.map(str::to_string),
            mta_sts,
            ..Default::default()
        };
        assert_eq!(sys(Some("verify"), false).defense(), "verify");
        assert_eq!(sys(Some("may"), true).defense(), "may+mta-sts");
        assert_eq!(sys(None, true).defense(), "may+mta-sts", "the default outbound policy fills in");
        let from_json: SystemInfo =
            serde_json::from_str(r#"{"name":"a","domain":"a.example","starttls":true,"mta_sts":true}"#).expect("json");
        assert_eq!(from_json.defense(), "may+mta-sts");
    }

    #[test]
    fn the_sessions_frame_has_every_field_of_the_record() {
        let session = TapSession {
            tls_offered_ciphers: vec!["TLS_AES_128_GCM_SHA256".into()],
            cert_subject: Some("CN=mx.example.org".into()),
            ..Default::default()
        };
        let json = serde_json::to_value(&session).expect("serializable");
        let mut fields: Vec<String> = json.as_object().expect("an object").keys().cloned().collect();
        let frame = tap_sessions_frame(std::slice::from_ref(&session)).expect("frame");
        let mut columns: Vec<String> = frame.get_column_names().iter().map(|c| c.to_string()).collect();
        fields.sort();
        columns.sort();
        assert_eq!(columns, fields);
        let subject = frame.column("cert_subject").expect("column").str().expect("str").get(0);
        assert_eq!(subject, Some("CN=mx.example.org"));
    }

    #[test]
    fn tls_records_are_one_row_each_in_session_order() {
        let rec = |ts, orig, len| records::TlsAppRecord { ts, orig, len };
        let a = TapSession {
            uid: "Ca".into(),
            tls_app_records: vec![rec(1.0, true, 58), rec(1.5, false, 300)],
            est_message_bytes: vec![10, 20],
            ..Default::default()
        };
        let b = TapSession { uid: "Cb".into(), tls_app_records: vec![rec(2.0, true, 40)], ..Default::default() };
        let frame = tap_tls_records_frame(&[a.clone(), TapSession::default(), b]).expect("frame");
        assert_eq!(frame.height(), 3);
        let uids: Vec<Option<&str>> = frame.column("uid").expect("uid").str().expect("str").into_iter().collect();
        assert_eq!(uids, [Some("Ca"), Some("Ca"), Some("Cb")]);
        let seq: Vec<Option<u32>> = frame.column("seq").expect("seq").u32().expect("u32").into_iter().collect();
        assert_eq!(seq, [Some(0), Some(1), Some(0)]);
        let len: Vec<Option<u32>> = frame.column("len").expect("len").u32().expect("u32").into_iter().collect();
        assert_eq!(len, [Some(58), Some(300), Some(40)]);
        let sessions = tap_sessions_frame(&[a]).expect("frame");
        let sizes = sessions.column("est_message_bytes").expect("column").list().expect("list").get_as_series(0);
        let sizes: Vec<Option<u64>> = sizes.expect("row").u64().expect("u64").into_iter().collect();
        assert_eq!(sizes, [Some(10), Some(20)]);
        assert!(tap_tls_records_frame(&[]).expect("empty").height() == 0);
    }
}
