//! Linkage across hops: does an eavesdropper who taps some users' access lines as well as the
//! lines between systems learn "this user wrote to that system"? The 1997 proposal claims
//! STARTTLS leaves only "this system sent this much mail to that system".
//!
//! For every message seen on a tapped access line (a user's submission session to its own
//! system: its size and time), the adversary looks for the sending system's outbound
//! observations on tapped lines that are consistent with it ([`consistent`]): sent by that
//! system, after the submission and within [`WINDOW_SECS`] of it, of a size within the growth a
//! relay adds ([`SIZE_BELOW`], [`SIZE_ABOVE`]), and, where a line is plaintext, with the same
//! `MAIL FROM` (the tapped user's address) and `Message-ID` when both sides show one. The
//! consistent observations are the message's anonymity set; the adversary guesses that the user
//! wrote to every receiving system among them. Ground truth then scores the guesses per sender
//! user (precision, recall). ANALYSIS.md, "Linkage across hops", states the rules and the
//! tables; everything here reads files and never panics on their content.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use polars::prelude::*;

use crate::error::{AnalysisError, HINT_INGEST};
use crate::layout::RunLayout;
use crate::table_io::TableRef;
use crate::table_io::{read_parquet, write_csv, write_parquet};

/// `analysis/linkage`: one row per message seen on a tapped access line.
pub const TABLE_LINKAGE: &str = "linkage";
/// `analysis/linkage_users`: one row per tapped sender user and scope (all, tls, plaintext, ...).
pub const TABLE_LINKAGE_USERS: &str = "linkage_users";
/// `analysis/linkage_summary`: one row, the run's linkage figures.
pub const TABLE_LINKAGE_SUMMARY: &str = "linkage_summary";

/// Seconds after its submission session ends within which an outbound observation may carry a
/// message: the adversary's bound on queueing. smtplab's relays hand mail on at once and retry
/// after 1 s, then up to 10 s; on loopback the outbound session starts within milliseconds.
pub const WINDOW_SECS: f64 = 10.0;
/// Bytes by which an outbound message may be smaller than the submitted one: the TLS size
/// estimate is exact but for dot-stuffing (one byte per line starting with a dot) and a QUIT
/// pipelined behind the message (6 bytes); 64 covers both with room.
pub const SIZE_BELOW: i64 = 64;
/// Bytes by which an outbound message may be larger: the relay prepends one `Received:` header
/// (from, by, with, id, for, date; 150 to 400 bytes depending on names and the TLS clause), and
/// no relay smtplab runs adds more than 1 KiB.
pub const SIZE_ABOVE: i64 = 1024;

/// One message on a tapped access line, as the eavesdropper sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccessMessage {
    /// The user whose line it is (the adversary knows whose line it taps).
    pub user: String,
    /// The user's own system (the other end of the line).
    pub system: String,
    /// The submission session's start and end, UTC epoch seconds.
    pub start: f64,
    pub end: f64,
    /// The message's size: read in plaintext, estimated from the TLS records otherwise.
    pub bytes: u64,
    /// The submission session used STARTTLS.
    pub tls: bool,
    /// The `Message-ID` read in plaintext.
    pub msg_id: Option<String>,
    /// Ground truth, for scoring only: the message's id.
    pub message_id: Option<String>,
}

/// One message observed on a tapped line between systems.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutboundMessage {
    pub sender_system: String,
    pub receiver_system: String,
    /// The session's start and end, UTC epoch seconds.
    pub start: f64,
    pub end: f64,
    /// The session carried several messages (connection reuse): its start need not follow the
    /// submission, so its whole span is tested against the window.
    pub reused: bool,
    pub bytes: u64,
    pub tls: bool,
    /// Read in plaintext: `MAIL FROM` and `Message-ID`.
    pub mail_from: Option<String>,
    pub msg_id: Option<String>,
    /// Read in plaintext: the scenario's systems whose domains the `To` and `Cc` headers name
    /// (every recipient but `Bcc`'s), empty when none is read.
    pub named_systems: BTreeSet<String>,
    /// Ground truth, for scoring only.
    pub message_id: Option<String>,
}

/// The adversary's matching rule ([`WINDOW_SECS`], [`SIZE_BELOW`], [`SIZE_ABOVE`] by default).
#[derive(Debug, Clone, Copy)]
pub struct LinkageRule {
    pub window_secs: f64,
    pub size_below: i64,
    pub size_above: i64,
}

impl Default for LinkageRule {
    fn default() -> Self {
        LinkageRule { window_secs: WINDOW_SECS, size_below: SIZE_BELOW, size_above: SIZE_ABOVE }
    }
}

/// Whether `o` could be the onward hop of `a` under `rule`.
pub fn consistent(a: &AccessMessage, o: &OutboundMessage, rule: &LinkageRule) -> bool {
    if o.sender_system != a.system {
        return false;
    }
    let latest = a.end + rule.window_secs;
    let in_time =
        if o.reused { o.end >= a.start && o.start <= latest } else { o.start >= a.start && o.start <= latest };
    let growth = o.bytes as i64 - a.bytes as i64;
    let in_size = (-rule.size_below..=rule.size_above).contains(&growth);
    let same = |x: &Option<String>, y: &Option<String>, key: fn(&str) -> String| match (x, y) {
        (Some(x), Some(y)) => key(x) == key(y),
        _ => true,
    };
    let from_ok = same(&o.mail_from, &Some(a.user.clone()), address_key);
    let id_ok = same(&o.msg_id, &a.msg_id, |s| s.trim().to_string());
    in_time && in_size && from_ok && id_ok
}

/// Whether the plaintext hop `o` carries the message `a` by its Message-ID, read on both lines.
fn identified(a: &AccessMessage, o: &OutboundMessage) -> bool {
    match (&a.msg_id, &o.msg_id) {
        (Some(x), Some(y)) => !o.tls && x.trim() == y.trim(),
        _ => false,
    }
}

/// An address compared the way SMTP compares it in practice: without `<>` and case.
fn address_key(s: &str) -> String {
    s.trim().trim_start_matches('<').trim_end_matches('>').to_ascii_lowercase()
}

/// What the adversary makes of one access message.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageLinkage {
    /// Indices into the outbound observations: the anonymity set.
    pub candidates: Vec<usize>,
    /// Candidates by receiving system: the guess is every key.
    pub systems: BTreeMap<String, usize>,
    /// log2 of the anonymity set (uniform over candidates); `None` when it is empty.
    pub entropy_bits: Option<f64>,
    /// Entropy of the receiving system under that uniform weighting, bits.
    pub system_entropy_bits: Option<f64>,
    /// Candidates that truly carried the message (ground truth).
    pub true_candidates: usize,
}

/// Matches every access message against every outbound observation.
pub fn link(access: &[AccessMessage], outbound: &[OutboundMessage], rule: &LinkageRule) -> Vec<MessageLinkage> {
    // By sender system first: a message is only ever compared with its own system's hops.
    let mut by_system: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, o) in outbound.iter().enumerate() {
        by_system.entry(o.sender_system.as_str()).or_default().push(i);
    }
    access
        .iter()
        .map(|a| {
            let mut candidates: Vec<usize> = by_system
                .get(a.system.as_str())
                .map(|v| v.iter().copied().filter(|&i| consistent(a, &outbound[i], rule)).collect())
                .unwrap_or_default();
            // A plaintext hop that the Message-ID read on the access line identifies shows the
            // message's To and Cc: the systems they name are its recipients' (Bcc's aside), so
            // every candidate to another system, STARTTLS ones included, is dropped.
            let named: BTreeSet<&String> = candidates
                .iter()
                .map(|&i| &outbound[i])
                .filter(|o| identified(a, o))
                .flat_map(|o| o.named_systems.iter())
                .collect();
            if !named.is_empty() {
                candidates.retain(|&i| named.contains(&outbound[i].receiver_system));
            }
            let mut systems: BTreeMap<String, usize> = BTreeMap::new();
            for &i in &candidates {
                *systems.entry(outbound[i].receiver_system.clone()).or_default() += 1;
            }
            let n = candidates.len();
            let entropy_bits = (n > 0).then(|| (n as f64).log2());
            let system_entropy_bits = (n > 0).then(|| {
                systems
                    .values()
                    .map(|&k| {
                        let p = k as f64 / n as f64;
                        -p * p.log2()
                    })
                    .sum::<f64>()
                    .max(0.0)
            });
            let true_candidates = candidates
                .iter()
                .filter(|&&i| a.message_id.is_some() && outbound[i].message_id == a.message_id)
                .count();
            MessageLinkage { candidates, systems, entropy_bits, system_entropy_bits, true_candidates }
        })
        .collect()
}

/// The adversary's user → recipient-system guesses scored against the truth, for one user and
/// scope (the messages of one link class, or all of them).
#[derive(Debug, Clone, PartialEq)]
pub struct UserScore {
    pub user: String,
    pub scope: String,
    pub messages: u64,
    /// Distinct recipient systems guessed, the guesses that were right, and the distinct
    /// recipient systems (other than the user's own) of the user's messages in the truth.
    pub guessed: u64,
    pub correct: u64,
    pub truth: u64,
    /// `correct / guessed` and `correct / truth`; `None` where the divisor is 0.
    pub precision: Option<f64>,
    pub recall: Option<f64>,
}

/// Scores per user, over all messages (`scope` "all") and per link class (`classes[i]` is the
/// class of access message `i`). `truth[i]` are message `i`'s recipient systems other than its
/// sender's.
pub fn user_scores(
    access: &[AccessMessage],
    links: &[MessageLinkage],
    truth: &[BTreeSet<String>],
    classes: &[String],
) -> Vec<UserScore> {
    type Sets = (u64, BTreeSet<String>, BTreeSet<String>);
    let mut groups: BTreeMap<(String, String), Sets> = BTreeMap::new();
    for (i, a) in access.iter().enumerate() {
        let (Some(l), Some(t)) = (links.get(i), truth.get(i)) else { continue };
        let class = classes.get(i).cloned().unwrap_or_else(|| "none".into());
        for scope in ["all".to_string(), class] {
            let g = groups.entry((a.user.clone(), scope)).or_default();
            g.0 += 1;
            g.1.extend(l.systems.keys().cloned());
            g.2.extend(t.iter().cloned());
        }
    }
    groups
        .into_iter()
        .map(|((user, scope), (messages, guessed, truth))| {
            let correct = guessed.intersection(&truth).count() as u64;
            let (g, t) = (guessed.len() as u64, truth.len() as u64);
            UserScore {
                user,
                scope,
                messages,
                guessed: g,
                correct,
                truth: t,
                precision: (g > 0).then(|| correct as f64 / g as f64),
                recall: (t > 0).then(|| correct as f64 / t as f64),
            }
        })
        .collect()
}

/// The run's linkage figures (`analysis/linkage_summary`), per scope: `all`, `tls`, `plaintext`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkageSummary {
    pub scope: String,
    pub messages: u64,
    pub median_anonymity_set: Option<f64>,
    pub mean_entropy_bits: Option<f64>,
    /// Pooled over users: sum of correct guesses over sum of guesses (over truth for recall).
    pub precision: Option<f64>,
    pub recall: Option<f64>,
}

/// Summary rows for the scopes `all`, `tls` and `plaintext` (a scope without messages is left out).
pub fn summarise(links: &[MessageLinkage], classes: &[String], scores: &[UserScore]) -> Vec<LinkageSummary> {
    ["all", "tls", "plaintext"]
        .into_iter()
        .filter_map(|scope| {
            let picked: Vec<&MessageLinkage> = links
                .iter()
                .enumerate()
                .filter(|(i, _)| scope == "all" || classes.get(*i).map(String::as_str) == Some(scope))
                .map(|(_, l)| l)
                .collect();
            if picked.is_empty() {
                return None;
            }
            let mut sizes: Vec<f64> = picked.iter().map(|l| l.candidates.len() as f64).collect();
            sizes.sort_by(f64::total_cmp);
            let median = match sizes.len() {
                0 => None,
                n if n % 2 == 1 => sizes.get(n / 2).copied(),
                n => Some(
                    (sizes.get(n / 2 - 1).copied().unwrap_or(0.0) + sizes.get(n / 2).copied().unwrap_or(0.0)) / 2.0,
                ),
            };
            let entropies: Vec<f64> = picked.iter().filter_map(|l| l.entropy_bits).collect();
            let mean_entropy = (!entropies.is_empty()).then(|| entropies.iter().sum::<f64>() / entropies.len() as f64);
            let s: Vec<&UserScore> = scores.iter().filter(|u| u.scope == scope).collect();
            let (g, c, t) = s.iter().fold((0, 0, 0), |(g, c, t), u| (g + u.guessed, c + u.correct, t + u.truth));
            Some(LinkageSummary {
                scope: scope.to_string(),
                messages: picked.len() as u64,
                median_anonymity_set: median,
                mean_entropy_bits: mean_entropy,
                precision: (g > 0).then(|| c as f64 / g as f64),
                recall: (t > 0).then(|| c as f64 / t as f64),
            })
        })
        .collect()
}

/// Writes `analysis/linkage`, `linkage_users` and `linkage_summary` (Parquet and CSV) when the
/// run tapped access lines (`truth/access_taps.json` lists a tapped user); returns the summary
/// rows, or `None` for a run without access taps.
pub fn write_linkage_tables(layout: &RunLayout) -> Result<Option<Vec<LinkageSummary>>, AnalysisError> {
    let taps_path = layout.truth_dir().join("access_taps.json");
    let Some(taps) = records::read_json_file_opt::<Vec<records::AccessTap>>(&taps_path, "the access-line taps")? else {
        return Ok(None);
    };
    let users: HashMap<String, &records::AccessTap> =
        taps.iter().filter(|t| t.tapped).map(|t| (t.address.clone(), t)).collect();
    if users.is_empty() {
        return Ok(None);
    }
    let inputs = read_inputs(layout, &users)?;
    let links = link(&inputs.access, &inputs.outbound, &LinkageRule::default());
    let scores = user_scores(&inputs.access, &links, &inputs.truth, &inputs.classes);
    let summary = summarise(&links, &inputs.classes, &scores);
    let step = |what: &'static str| AnalysisError::compute(layout.root(), what);
    let mut tables = [
        (TABLE_LINKAGE, linkage_frame(&inputs, &links).map_err(step("building the linkage table"))?),
        (TABLE_LINKAGE_USERS, users_frame(&scores).map_err(step("building the linkage users table"))?),
        (TABLE_LINKAGE_SUMMARY, summary_frame(&summary).map_err(step("building the linkage summary"))?),
    ];
    for (name, df) in &mut tables {
        write_parquet(df, &layout.table_parquet(name))?;
        write_csv(df, &layout.table_csv(name))?;
    }
    Ok(Some(summary))
}

/// A transaction read in plaintext: its time, `MAIL FROM` and `Message-ID`.
/// A plaintext transaction as read: time, MAIL FROM, Message-ID, systems named by To and Cc.
type Read = (f64, Option<String>, Option<String>, BTreeSet<String>);

/// What the matching needs, read from the run's tables.
struct Inputs {
    access: Vec<AccessMessage>,
    outbound: Vec<OutboundMessage>,
    /// Per access message: its recipient systems other than its sender's (truth).
    truth: Vec<BTreeSet<String>>,
    /// Per access message: how its hops crossed the lines (truth): `tls`, `plaintext`, `mixed`, `none`.
    classes: Vec<String>,
}

fn read_inputs(layout: &RunLayout, users: &HashMap<String, &records::AccessTap>) -> Result<Inputs, AnalysisError> {
    let systems = crate::ingest::read_systems(&layout.truth_systems_json())?.unwrap_or_default();
    let owner: HashMap<&str, &str> = systems.iter().map(|s| (s.address.as_str(), s.name.as_str())).collect();

    // Ground truth of the sessions: which messages each client socket carried.
    let mut carried: HashMap<String, Vec<String>> = HashMap::new();
    let sessions_path = layout.truth_sessions_jsonl();
    let mut chunks = records::JsonlChunks::<records::SessionRecord>::open(&sessions_path)?;
    loop {
        let chunk = chunks.next_chunk(20_000)?;
        if chunk.is_empty() {
            break;
        }
        for s in chunk {
            let client = match s.direction.as_str() {
                "submission" => s.peer_addr,
                "outbound" => s.local_addr,
                _ => continue,
            };
            carried.entry(client).or_default().extend(s.messages.into_iter().map(|m| m.message_id));
        }
    }

    // The plaintext transactions by session: MAIL FROM and Message-ID, in order.
    let tx_path = layout.tap_transactions_parquet();
    let tx = read_parquet(&tx_path, HINT_INGEST)?;
    let t = TableRef { df: &tx, path: &tx_path };
    let (uids, ts, from, ids) =
        (t.strings("uid")?, t.floats("ts")?, t.opt_strings("mailfrom")?, t.opt_strings("msg_id")?);
    let (to, cc) = (string_lists(&t, "to")?, string_lists(&t, "cc")?);
    let by_domain: HashMap<String, &str> =
        systems.iter().map(|s| (s.domain.to_ascii_lowercase(), s.name.as_str())).collect();
    let named = |to: &[String], cc: &[String]| -> BTreeSet<String> {
        to.iter()
            .chain(cc)
            .filter_map(|addr| header_domain(addr))
            .filter_map(|d| by_domain.get(&d).map(|s| s.to_string()))
            .collect()
    };
    let mut read: HashMap<String, Vec<Read>> = HashMap::new();
    for (i, (((u, ts), f), id)) in uids.into_iter().zip(ts).zip(from).zip(ids).enumerate() {
        let names = named(to.get(i).map_or(&[][..], Vec::as_slice), cc.get(i).map_or(&[][..], Vec::as_slice));
        read.entry(u.unwrap_or_default()).or_default().push((ts.unwrap_or_default(), f, id, names));
    }
    for v in read.values_mut() {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
    }

    let path = layout.tap_sessions_parquet();
    let df = read_parquet(&path, HINT_INGEST)?;
    let t = TableRef { df: &df, path: &path };
    let (uid, start, orig_h, orig_p, resp_h, duration, tls) = (
        t.strings("uid")?,
        t.floats("ts")?,
        t.strings("id.orig_h")?,
        t.u32s("id.orig_p")?,
        t.strings("id.resp_h")?,
        t.floats("duration")?,
        t.bools("starttls_used")?,
    );
    let sizes = u64_lists(&t, "est_message_bytes")?;
    let mut access = Vec::new();
    let mut outbound = Vec::new();
    for i in 0..df.height() {
        let get = |v: &Vec<Option<String>>| v.get(i).cloned().flatten().unwrap_or_default();
        let (client, server) = (get(&orig_h), get(&resp_h));
        let port = u16::try_from(orig_p.get(i).copied().unwrap_or_default()).unwrap_or_default();
        let socket = crate::link_key::socket_text(&client, port);
        let truth = carried.get(&socket).cloned().unwrap_or_default();
        let s = start.get(i).copied().flatten().unwrap_or_default();
        let e = s + duration.get(i).copied().flatten().unwrap_or_default();
        let used_tls = tls.get(i).copied().unwrap_or_default();
        let plain = read.get(&get(&uid)).cloned().unwrap_or_default();
        let messages = sizes.get(i).cloned().unwrap_or_default();
        // The k-th estimated message is the k-th the truth lists, when the counts agree.
        let truth_of = |k: usize| if truth.len() == messages.len() { truth.get(k).cloned() } else { None };
        if let Some(tap) = users.get(&client) {
            for (k, &bytes) in messages.iter().enumerate() {
                access.push(AccessMessage {
                    user: tap.user.clone(),
                    system: tap.system.clone(),
                    start: s,
                    end: e,
                    bytes,
                    tls: used_tls,
                    msg_id: if used_tls { None } else { plain.get(k).and_then(|p| p.2.clone()) },
                    message_id: truth_of(k),
                });
            }
        } else if let (Some(&from), Some(&to)) = (owner.get(client.as_str()), owner.get(server.as_str())) {
            for (k, &bytes) in messages.iter().enumerate() {
                let seen = if used_tls { None } else { plain.get(k) };
                outbound.push(OutboundMessage {
                    sender_system: from.to_string(),
                    receiver_system: to.to_string(),
                    start: s,
                    end: e,
                    reused: messages.len() > 1,
                    bytes,
                    tls: used_tls,
                    mail_from: seen.and_then(|p| p.1.clone()),
                    msg_id: seen.and_then(|p| p.2.clone()),
                    named_systems: seen.map(|p| p.3.clone()).unwrap_or_default(),
                    message_id: truth_of(k),
                });
            }
        }
    }

    // Truth per message: its recipient systems and how its hops crossed.
    let mpath = layout.truth_messages_parquet();
    let mdf = read_parquet(&mpath, HINT_INGEST)?;
    let m = TableRef { df: &mdf, path: &mpath };
    let (ids, senders) = (m.strings("message_id")?, m.strings("sender_system")?);
    let rcpt_systems = string_lists(&m, "recipient_systems")?;
    let mut recipients: HashMap<String, BTreeSet<String>> = HashMap::new();
    for ((id, sender), rs) in ids.into_iter().zip(senders).zip(rcpt_systems) {
        let sender = sender.unwrap_or_default();
        recipients.insert(id.unwrap_or_default(), rs.into_iter().filter(|r| *r != sender).collect());
    }
    let hpath = layout.truth_hops_parquet();
    let hdf = read_parquet(&hpath, HINT_INGEST)?;
    let h = TableRef { df: &hdf, path: &hpath };
    let mut hop_tls: HashMap<String, BTreeSet<bool>> = HashMap::new();
    for (id, used) in h.opt_strings("message_id")?.into_iter().zip(h.bools("starttls_used")?) {
        if let Some(id) = id {
            hop_tls.entry(id).or_default().insert(used);
        }
    }
    let truth = access
        .iter()
        .map(|a| a.message_id.as_ref().and_then(|id| recipients.get(id)).cloned().unwrap_or_default())
        .collect();
    let classes = access
        .iter()
        .map(|a| {
            let kinds = a.message_id.as_ref().and_then(|id| hop_tls.get(id));
            match kinds.map(|k| (k.contains(&true), k.contains(&false))) {
                Some((true, false)) => "tls",
                Some((false, true)) => "plaintext",
                Some((true, true)) => "mixed",
                _ => "none",
            }
            .to_string()
        })
        .collect();
    Ok(Inputs { access, outbound, truth, classes })
}

/// The domain of an address as a To or Cc header gives it (`Name <user@Domain>` or
/// `user@domain`), lower case; `None` without an `@`.
fn header_domain(addr: &str) -> Option<String> {
    let inner = match (addr.rfind('<'), addr.rfind('>')) {
        (Some(l), Some(r)) if l < r => addr.get(l + 1..r)?,
        _ => addr,
    };
    let (_, domain) = inner.trim().rsplit_once('@')?;
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    (!domain.is_empty()).then_some(domain)
}

/// A list-of-u64 column, one vector per row (null rows empty).
fn u64_lists(t: &TableRef<'_>, name: &str) -> Result<Vec<Vec<u64>>, AnalysisError> {
    let err = || column_error(t, name, "a list of unsigned 64-bit integers");
    let ca = t.df.column(name).map_err(|_| err())?.list().map_err(|_| err())?;
    ca.into_iter()
        .map(|row| match row {
            None => Ok(Vec::new()),
            Some(s) => Ok(s.u64().map_err(|_| err())?.into_iter().flatten().collect()),
        })
        .collect()
}

/// A list-of-text column, one vector per row (null rows empty).
fn string_lists(t: &TableRef<'_>, name: &str) -> Result<Vec<Vec<String>>, AnalysisError> {
    let err = || column_error(t, name, "a list of text");
    let ca = t.df.column(name).map_err(|_| err())?.list().map_err(|_| err())?;
    ca.into_iter()
        .map(|row| match row {
            None => Ok(Vec::new()),
            Some(s) => Ok(s.str().map_err(|_| err())?.into_iter().flatten().map(str::to_string).collect()),
        })
        .collect()
}

fn column_error(t: &TableRef<'_>, column: &str, expected: &'static str) -> AnalysisError {
    AnalysisError::Column { path: t.path.to_path_buf(), column: column.to_string(), expected, hint: HINT_INGEST }
}

fn linkage_frame(inputs: &Inputs, links: &[MessageLinkage]) -> PolarsResult<DataFrame> {
    let a = &inputs.access;
    let joined = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join(",");
    let guessed: Vec<String> = links.iter().map(|l| l.systems.keys().cloned().collect::<Vec<_>>().join(",")).collect();
    let truth: Vec<String> = inputs.truth.iter().map(joined).collect();
    let correct: Vec<u64> = links
        .iter()
        .zip(&inputs.truth)
        .map(|(l, t)| l.systems.keys().filter(|k| t.contains(*k)).count() as u64)
        .collect();
    DataFrame::new(vec![
        Column::new("message_id".into(), a.iter().map(|x| x.message_id.clone()).collect::<Vec<_>>()),
        Column::new("user".into(), a.iter().map(|x| x.user.clone()).collect::<Vec<_>>()),
        Column::new("sender_system".into(), a.iter().map(|x| x.system.clone()).collect::<Vec<_>>()),
        Column::new("submitted_at".into(), a.iter().map(|x| x.start).collect::<Vec<_>>()),
        Column::new("access_bytes".into(), a.iter().map(|x| x.bytes).collect::<Vec<_>>()),
        Column::new("access_tls".into(), a.iter().map(|x| x.tls).collect::<Vec<_>>()),
        Column::new("link_tls".into(), inputs.classes.clone()),
        Column::new("anonymity_set".into(), links.iter().map(|l| l.candidates.len() as u64).collect::<Vec<_>>()),
        Column::new("candidate_systems".into(), links.iter().map(|l| l.systems.len() as u64).collect::<Vec<_>>()),
        Column::new("entropy_bits".into(), links.iter().map(|l| l.entropy_bits).collect::<Vec<_>>()),
        Column::new("system_entropy_bits".into(), links.iter().map(|l| l.system_entropy_bits).collect::<Vec<_>>()),
        Column::new("true_candidates".into(), links.iter().map(|l| l.true_candidates as u64).collect::<Vec<_>>()),
        Column::new("guessed_systems".into(), guessed),
        Column::new("recipient_systems".into(), truth),
        Column::new("correct_systems".into(), correct),
    ])
}

fn users_frame(scores: &[UserScore]) -> PolarsResult<DataFrame> {
    let s = scores;
    DataFrame::new(vec![
        Column::new("user".into(), s.iter().map(|x| x.user.clone()).collect::<Vec<_>>()),
        Column::new("scope".into(), s.iter().map(|x| x.scope.clone()).collect::<Vec<_>>()),
        Column::new("messages".into(), s.iter().map(|x| x.messages).collect::<Vec<_>>()),
        Column::new("guessed".into(), s.iter().map(|x| x.guessed).collect::<Vec<_>>()),
        Column::new("correct".into(), s.iter().map(|x| x.correct).collect::<Vec<_>>()),
        Column::new("truth".into(), s.iter().map(|x| x.truth).collect::<Vec<_>>()),
        Column::new("precision".into(), s.iter().map(|x| x.precision).collect::<Vec<_>>()),
        Column::new("recall".into(), s.iter().map(|x| x.recall).collect::<Vec<_>>()),
    ])
}

fn summary_frame(rows: &[LinkageSummary]) -> PolarsResult<DataFrame> {
    DataFrame::new(vec![
        Column::new("scope".into(), rows.iter().map(|x| x.scope.clone()).collect::<Vec<_>>()),
        Column::new("messages".into(), rows.iter().map(|x| x.messages).collect::<Vec<_>>()),
        Column::new("median_anonymity_set".into(), rows.iter().map(|x| x.median_anonymity_set).collect::<Vec<_>>()),
        Column::new("mean_entropy_bits".into(), rows.iter().map(|x| x.mean_entropy_bits).collect::<Vec<_>>()),
        Column::new("precision".into(), rows.iter().map(|x| x.precision).collect::<Vec<_>>()),
        Column::new("recall".into(), rows.iter().map(|x| x.recall).collect::<Vec<_>>()),
    ])
}

/// Reads `analysis/linkage_summary.parquet` back; `None` when the run had no access taps.
pub fn read_linkage_summary(run_dir: &Path) -> Result<Option<Vec<LinkageSummary>>, AnalysisError> {
    let path = RunLayout::new(run_dir).table_parquet(TABLE_LINKAGE_SUMMARY);
    if !path.is_file() {
        return Ok(None);
    }
    let df = read_parquet(&path, crate::error::HINT_ANALYZE)?;
    let t = TableRef { df: &df, path: &path };
    let (scope, messages) = (t.strings("scope")?, t.counts("messages")?);
    let (median, entropy) = (t.floats("median_anonymity_set")?, t.floats("mean_entropy_bits")?);
    let (precision, recall) = (t.floats("precision")?, t.floats("recall")?);
    Ok(Some(
        (0..df.height())
            .map(|i| LinkageSummary {
                scope: scope.get(i).cloned().flatten().unwrap_or_default(),
                messages: messages.get(i).copied().unwrap_or_default(),
                median_anonymity_set: median.get(i).copied().flatten(),
                mean_entropy_bits: entropy.get(i).copied().flatten(),
                precision: precision.get(i).copied().flatten(),
                recall: recall.get(i).copied().flatten(),
            })
            .collect(),
    ))
}

/// Reads the anonymity set of every row of `analysis/linkage.parquet` with its `link_tls`
/// class, for the report's figure; `None` when the run had no access taps.
pub fn read_anonymity_sets(run_dir: &Path) -> Result<Option<Vec<(String, u64)>>, AnalysisError> {
    let path = RunLayout::new(run_dir).table_parquet(TABLE_LINKAGE);
    if !path.is_file() {
        return Ok(None);
    }
    let df = read_parquet(&path, crate::error::HINT_ANALYZE)?;
    let t = TableRef { df: &df, path: &path };
    let classes = t.strings("link_tls")?;
    let sets = t.counts("anonymity_set")?;
    Ok(Some(classes.into_iter().map(Option::unwrap_or_default).zip(sets).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(user: &str, system: &str, start: f64, bytes: u64, id: &str) -> AccessMessage {
        AccessMessage {
            user: user.into(),
            system: system.into(),
            start,
            end: start + 0.1,
            bytes,
            tls: true,
            msg_id: None,
            message_id: Some(id.into()),
        }
    }

    fn hop(from: &str, to: &str, start: f64, bytes: u64, tls: bool, id: &str) -> OutboundMessage {
        OutboundMessage {
            sender_system: from.into(),
            receiver_system: to.into(),
            start,
            end: start + 0.1,
            reused: false,
            bytes,
            tls,
            mail_from: None,
            msg_id: None,
            named_systems: BTreeSet::new(),
            message_id: Some(id.into()),
        }
    }

    /// Worked by hand with the rule W = 10 s, size growth in [-64, +1024] bytes:
    ///
    /// Access line of ann@a (system a): m1 at t=100, 4000 bytes; m2 at t=200, 9000 bytes.
    /// Access line of bob@a: m3 at t=100.05, 4100 bytes.
    /// Access line of cid@c (system c, plaintext everywhere): m4 at t=300, 5000 bytes,
    /// Message-ID <m4@c> read on the access line.
    ///
    /// Outbound observations:
    ///   0: a→b t=100.2 4250 TLS (m1)     1: a→d t=100.3 4300 TLS (m3)
    ///   2: a→e t=100.4 4200 TLS (m1)     3: a→b t=109.0 6000 TLS (another message: too big)
    ///   4: a→b t=99.0  4200 TLS (before m1's submission: never m1)
    ///   5: a→d t=200.1 9200 TLS (m2)     6: a→b t=215   9200 TLS (past 200.1 + 10 s)
    ///   7: b→a t=100.2 4200 TLS (sent by b, not a)
    ///   8: c→b t=300.2 5210 plain, MAIL FROM cid@c, Message-ID <m4@c> (m4)
    ///   9: c→d t=300.3 5200 plain, MAIL FROM eve@c (another user)
    ///  10: c→e t=300.4 5200 plain, MAIL FROM cid@c, Message-ID <other@c>
    ///
    /// m1 (4000 B, 100..100.1): consistent 0 (+250), 1 (+300), 2 (+200); 3 is +2000; 4 before
    ///   the submission; 7 from b. Anonymity set 3, log2 3 = 1.585 bits; systems b, d, e one
    ///   each: also 1.585 bits. True candidates: 0 and 2.
    /// m3 (4100 B, 100.05..100.15): 0 (+150), 1 (+200), 2 (+100): the same 3 (timing alone
    ///   cannot tell ann's and bob's messages apart). True: 1.
    /// m2 (9000 B, 200..200.1): 5 (+200) only; 6 is at 215 > 210.1. Set 1, 0 bits. True: 5.
    /// m4: 8 only (9 has another MAIL FROM, 10 another Message-ID). Set 1, 0 bits. True: 8.
    ///
    /// Truth: m1 → {b, e}, m2 → {d}, m3 → {d}, m4 → {b}.
    /// ann: guesses {b,d,e} ∪ {d} = {b,d,e}, truth {b,d,e}: precision 3/3, recall 3/3.
    /// bob: guesses {b,d,e}, truth {d}: precision 1/3, recall 1/1.
    /// cid: guesses {b}, truth {b}: 1, 1.
    /// Pooled over users: correct 3+1+1 = 5 of 3+3+1 = 7 guesses (0.714), of 3+1+1 = 5 truths (1.0).
    /// Median anonymity set of (3, 1, 3, 1) = 2; mean entropy (1.585·2 + 0 + 0)/4 = 0.792 bits.
    #[test]
    fn anonymity_sets_entropies_and_scores_worked_by_hand() {
        let mut m4 = access("cid@c", "c", 300.0, 5000, "m4");
        m4.tls = false;
        m4.msg_id = Some("<m4@c>".into());
        let access = vec![
            access("ann@a", "a", 100.0, 4000, "m1"),
            access("ann@a", "a", 200.0, 9000, "m2"),
            access("bob@a", "a", 100.05, 4100, "m3"),
            m4,
        ];
        let plain = |to: &str, t: f64, bytes: u64, from: &str, id: &str, truth: &str| OutboundMessage {
            mail_from: Some(format!("<{from}>")),
            msg_id: Some(id.into()),
            ..hop("c", to, t, bytes, false, truth)
        };
        let outbound = vec![
            hop("a", "b", 100.2, 4250, true, "m1"),
            hop("a", "d", 100.3, 4300, true, "m3"),
            hop("a", "e", 100.4, 4200, true, "m1"),
            hop("a", "b", 109.0, 6000, true, "x"),
            hop("a", "b", 99.0, 4200, true, "y"),
            hop("a", "d", 200.1, 9200, true, "m2"),
            hop("a", "b", 215.0, 9200, true, "z"),
            hop("b", "a", 100.2, 4200, true, "w"),
            plain("b", 300.2, 5210, "CID@c", "<m4@c>", "m4"),
            plain("d", 300.3, 5200, "eve@c", "<m4@c>", "v"),
            plain("e", 300.4, 5200, "cid@c", "<other@c>", "u"),
        ];
        let links = link(&access, &outbound, &LinkageRule::default());
        let sets: Vec<Vec<usize>> = links.iter().map(|l| l.candidates.clone()).collect();
        assert_eq!(sets, [vec![0, 1, 2], vec![5], vec![0, 1, 2], vec![8]]);
        let log2_3 = 3f64.log2();
        let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-12);
        assert!(close(links[0].entropy_bits, log2_3) && close(links[0].system_entropy_bits, log2_3));
        assert!(close(links[1].entropy_bits, 0.0) && close(links[3].entropy_bits, 0.0));
        assert_eq!(links.iter().map(|l| l.true_candidates).collect::<Vec<_>>(), [2, 1, 1, 1]);

        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<String>>();
        let truth = vec![set(&["b", "e"]), set(&["d"]), set(&["d"]), set(&["b"])];
        let classes: Vec<String> = ["tls", "tls", "tls", "plaintext"].map(String::from).to_vec();
        let scores = user_scores(&access, &links, &truth, &classes);
        let all = |u: &str| scores.iter().find(|s| s.user == u && s.scope == "all").cloned().expect("user");
        let ann = all("ann@a");
        assert_eq!((ann.guessed, ann.correct, ann.truth), (3, 3, 3));
        let bob = all("bob@a");
        assert_eq!((bob.guessed, bob.correct, bob.truth), (3, 1, 1));
        assert!(close(bob.precision, 1.0 / 3.0) && close(bob.recall, 1.0));
        let cid = all("cid@c");
        assert_eq!((cid.precision, cid.recall), (Some(1.0), Some(1.0)));

        let summary = summarise(&links, &classes, &scores);
        let s = &summary[0];
        assert_eq!((s.scope.as_str(), s.messages), ("all", 4));
        assert_eq!(s.median_anonymity_set, Some(2.0));
        assert!(close(s.mean_entropy_bits, 2.0 * log2_3 / 4.0));
        assert!(close(s.precision, 5.0 / 7.0) && close(s.recall, 1.0));
        let plaintext = summary.iter().find(|s| s.scope == "plaintext").expect("plaintext scope");
        assert_eq!(
            (plaintext.precision, plaintext.recall, plaintext.median_anonymity_set),
            (Some(1.0), Some(1.0), Some(1.0))
        );
    }

    /// An empty anonymity set has no entropy, and guesses nothing.
    #[test]
    fn a_message_with_no_consistent_hop() {
        let a = vec![access("ann@a", "a", 10.0, 1000, "m")];
        let links = link(&a, &[hop("a", "b", 50.0, 1100, true, "m")], &LinkageRule::default());
        assert!(links[0].candidates.is_empty() && links[0].entropy_bits.is_none());
        let scores = user_scores(&a, &links, &[BTreeSet::from(["b".to_string()])], &["tls".into()]);
        assert_eq!((scores[0].precision, scores[0].recall), (None, Some(0.0)));
    }

    /// To and Cc read on an identified plaintext hop. dan@c sends m5 (plaintext access line,
    /// Message-ID <m5@c>, 3000 bytes at t=400) to b and d. Observations of c, all within the
    /// window and size rule: 0: c→b t=400.2 3200 plain, <m5@c>, To names b.example and
    /// "D <x@D.Example.>" (systems b and d); 1: c→d t=400.3 3180 TLS (m5's other hop);
    /// 2: c→e t=400.4 3150 TLS (another user's message). Without the headers all three are
    /// candidates (TLS hops cannot be told apart): guesses {b, d, e}, precision 2/3. With them,
    /// e is not named: {0, 1}, guesses {b, d}, precision 1. A To naming a domain outside the
    /// scenario names no system and changes nothing.
    #[test]
    fn to_and_cc_of_an_identified_plaintext_hop_narrow_the_set() {
        let mut m5 = access("dan@c", "c", 400.0, 3000, "m5");
        m5.tls = false;
        m5.msg_id = Some("<m5@c>".into());
        let plain = |named: &[&str]| OutboundMessage {
            mail_from: Some("<dan@c>".into()),
            msg_id: Some(" <m5@c>".into()),
            named_systems: named.iter().map(|s| s.to_string()).collect(),
            ..hop("c", "b", 400.2, 3200, false, "m5")
        };
        let tls = [hop("c", "d", 400.3, 3180, true, "m5"), hop("c", "e", 400.4, 3150, true, "other")];
        let run = |first: OutboundMessage| {
            let outbound = [vec![first], tls.to_vec()].concat();
            link(std::slice::from_ref(&m5), &outbound, &LinkageRule::default()).remove(0)
        };
        let blind = run(plain(&[]));
        assert_eq!(blind.candidates, [0, 1, 2]);
        let read = run(plain(&["b", "d"]));
        assert_eq!(read.candidates, [0, 1]);
        assert_eq!(read.systems.keys().collect::<Vec<_>>(), ["b", "d"]);
        assert_eq!(read.true_candidates, 2);
        // A hop whose Message-ID differs identifies nothing: its headers are not used.
        let mut other = plain(&["b"]);
        other.msg_id = Some("<other@c>".into());
        assert_eq!(run(other).candidates, [1, 2], "the other Message-ID's hop is no candidate");

        assert_eq!(header_domain("D <x@D.Example.>").as_deref(), Some("d.example"));
        assert_eq!(header_domain("b@b.example").as_deref(), Some("b.example"));
        assert_eq!(header_domain("undisclosed-recipients:;"), None);
    }
}
