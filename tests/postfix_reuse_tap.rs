//! Issue 14, real MTAs: Postfix relaying to Postfix over STARTTLS with its connection cache on
//! and TLS connection reuse (`smtp_tls_connection_reuse = yes`, through the `tlsproxy` service),
//! captured live on loopback and read by `smtplab tap`, whose estimates inside TLS
//! (`est_messages`, `est_message_bytes`) are checked against Postfix's own record.
//!
//! Expected values come only from Postfix and from what the test submitted: the receiver's log
//! (`smtpd_client_port_logging = yes`: each connection by its client port, the queue IDs of the
//! messages it carried, and `disconnect ... mail=N data=N`), the sender's log (per delivery
//! `conn_use=N` when a cached connection was reused, and the receiver's queue ID from its reply),
//! and the receiver's mailbox: each message as it crossed the line is the stored file less the
//! lines the receiver added (Return-Path, X-Original-To, Delivered-To, its own Received), which
//! is the message the test submitted plus the sender's Received header.
//!
//! Needs root (Postfix's master, the live capture), postfix and swaks (scripts/test installs
//! them); fails saying so otherwise.

mod common;
#[path = "../relay/tests/common/mod.rs"]
mod peers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use peers::{Postfix, Scratch, certificate, lf, swaks};

/// The sender (A) and the receiver (B), on loopback addresses of their own.
const A: &str = "127.0.93.1:2525";
const B: &str = "127.0.93.2:2526";

/// Sizes of the messages submitted, in order: distinct, from 500 B to 40 kB, so each message's
/// estimate is told from its neighbours'.
const SIZES: [usize; 12] = [900, 2_500, 6_000, 1_200, 15_000, 3_300, 40_000, 1_800, 9_000, 500, 24_000, 4_200];

/// ANALYSIS.md's tolerance for an estimated size: 1% + 8 bytes.
fn within_tolerance(estimate: u64, truth: u64) -> bool {
    estimate.abs_diff(truth) as f64 <= truth as f64 * 0.01 + 8.0
}

#[test]
fn postfix_to_postfix_reused_tls_connections_estimates_match_postfix_logs() {
    common::require_root("Postfix's master and the live capture");
    peers::require("swaks");
    let scratch = Scratch::new("postfix-reuse-tap");
    let dir = &scratch.0;
    let (a_addr, b_addr): (SocketAddr, SocketAddr) = (A.parse().expect("A"), B.parse().expect("B"));

    let (cert, key, _) = certificate("mx.beta.example");
    std::fs::create_dir_all(dir.join("b")).expect("dir");
    std::fs::write(dir.join("b/cert.pem"), cert).expect("cert");
    std::fs::write(dir.join("b/key.pem"), key).expect("key");
    let b = Postfix::start(
        &dir.join("b"),
        "mx.beta.example",
        b_addr,
        &[
            "virtual_mailbox_domains = beta.example".into(),
            format!("smtpd_tls_cert_file = {}/b/cert.pem", dir.display()),
            format!("smtpd_tls_key_file = {}/b/key.pem", dir.display()),
            "smtpd_tls_security_level = may".into(),
            // "connect from unknown[127.0.93.1]:PORT": the port ties a connection to the tap's.
            "smtpd_client_port_logging = yes".into(),
        ],
    );
    let nexthop = format!("[{}]:{}", b_addr.ip(), b_addr.port());
    let a = Postfix::start_with_services(
        &dir.join("a"),
        "mx.alpha.example",
        a_addr,
        &[
            format!("relayhost = {nexthop}"),
            format!("smtp_bind_address = {}", a_addr.ip()),
            "smtp_tls_security_level = may".into(),
            // TLS connections are cached too (Postfix 3.4+), through tlsproxy.
            "smtp_tls_connection_reuse = yes".into(),
            // Cache connections to B always, not only when a backlog happens to be seen.
            format!("smtp_connection_cache_destinations = {nexthop}"),
            // Two parallel deliveries at most, so that twelve messages share connections.
            "smtp_destination_concurrency_limit = 2".into(),
            // Hold mail until the test flushes the queue (`postqueue -f`): the backlog is then
            // all twelve messages, whatever the machine's speed.
            "defer_transports = smtp".into(),
        ],
        &["tlsproxy unix - - n - 0 tlsproxy".into()],
    );

    // The eavesdropper on the line to B (submissions go to A's address and are not seen).
    let pcap = dir.join("a-to-b.pcap");
    let capture = tap::LiveCapture::start(
        &tap::LiveOptions { filter: format!("tcp and host {}", b_addr.ip()), ..Default::default() },
        &pcap,
    )
    .expect("live capture on lo");

    let mut submitted: HashMap<String, Vec<u8>> = HashMap::new();
    for (i, &size) in SIZES.iter().enumerate() {
        let (id, message) = message(i, size);
        let file = dir.join(format!("m{i}.eml"));
        // swaks appends CRLF . CRLF itself: give it the message without its last line end.
        std::fs::write(&file, &message[..message.len() - 2]).expect("message file");
        let out = swaks(a_addr, &format!("u{i}@alpha.example"), &format!("v{i}@beta.example"), &file, &[]);
        assert!(out.status.success(), "swaks to A: {}", String::from_utf8_lossy(&out.stdout));
        submitted.insert(id, message);
    }
    let held = wait_for(Duration::from_secs(30), || {
        a.log().matches("status=deferred (deferred transport)").count() >= SIZES.len()
    });
    assert!(held, "waited 30 s for A to hold every message. A log:\n{}", a.log());
    let flush = Command::new("postqueue").arg("-c").arg(a.config_dir()).arg("-f").output().expect("postqueue");
    assert!(flush.status.success(), "postqueue -f: {}", String::from_utf8_lossy(&flush.stderr));

    let mail = b.wait_for_mail(SIZES.len(), Duration::from_secs(120));
    assert_eq!(mail.len(), SIZES.len(), "B's mailbox.\nA log:\n{}\nB log:\n{}", a.log(), b.log());
    // Cached connections close after smtp_connection_cache_time_limit (2 s) idle: wait until B
    // logged the end of every connection it logged the start of, so the capture holds them whole.
    let ended = wait_for(Duration::from_secs(60), || {
        let log = b.log();
        let connects = log.matches(": connect from unknown[127.0.93.1]").count();
        connects > 0 && log.matches(": disconnect from unknown[127.0.93.1]").count() == connects
    });
    assert!(ended, "waited 60 s for B to log the end of every connection. B log:\n{}", b.log());
    std::thread::sleep(Duration::from_millis(500));
    let stats = capture.stop().expect("capture stops");
    assert_eq!(stats.dropped, 0, "the kernel dropped packets: {stats:?}");

    // Postfix's record: per connection (client port) the messages in order, from both ends.
    let (a_log, b_log) = (a.log(), b.log());
    let connections = connections(&b_log);
    let deliveries = deliveries(&a_log);
    let wire = wire_messages(&mail);
    assert_eq!(connections.iter().map(|c| c.queue_ids.len()).sum::<usize>(), SIZES.len(), "B's log:\n{b_log}");
    for c in &connections {
        assert_eq!((c.mail, c.data), (c.queue_ids.len(), c.queue_ids.len()), "port {}: B's disconnect line", c.port);
        // The sender's side of the same connection: conn_use 1 (not logged), 2, 3, ...
        let uses: Vec<u32> = c
            .queue_ids
            .iter()
            .map(|q| deliveries.get(q).unwrap_or_else(|| panic!("A's log names B's queue ID {q}:\n{a_log}")).1)
            .collect();
        assert_eq!(uses, (1..=uses.len() as u32).collect::<Vec<_>>(), "port {}: A's conn_use", c.port);
    }
    assert!(a_log.contains("TLS connection reused to"), "A reused a TLS connection:\n{a_log}");
    assert!(
        connections.iter().any(|c| c.queue_ids.len() >= 3),
        "the cache carried three or more messages over some connection: {connections:?}"
    );

    // The messages as they crossed the line, by B's queue ID; each is what the test submitted
    // with A's Received header on top.
    let mut truth: HashMap<&str, u64> = HashMap::new();
    for c in &connections {
        for (q, id) in c.queue_ids.iter().zip(&c.message_ids) {
            let (bytes, after_received) = wire.get(id.as_str()).unwrap_or_else(|| panic!("{id} in B's mailbox"));
            let sent = submitted.get(id).unwrap_or_else(|| panic!("{id} was submitted"));
            assert_eq!(lf(after_received), lf(sent), "{id}: delivered as submitted under A's Received header");
            truth.insert(q, *bytes);
        }
    }

    let out = Command::new(env!("CARGO_BIN_EXE_smtplab"))
        .args(["tap", &pcap.display().to_string(), "--format", "jsonl"])
        .output()
        .expect("run smtplab tap");
    assert!(out.status.success(), "smtplab tap: {}", String::from_utf8_lossy(&out.stderr));
    let sessions: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("one JSON object per line"))
        .filter(|r| r["record"] == "session")
        .collect();
    assert_eq!(sessions.len(), connections.len(), "one tap session per Postfix connection: {sessions:?}");
    let mut summary = Vec::new();
    for c in &connections {
        let s = sessions
            .iter()
            .find(|s| s["id.orig_h"] == "127.0.93.1" && s["id.orig_p"] == c.port && s["id.resp_p"] == b_addr.port())
            .unwrap_or_else(|| panic!("the tap saw the connection from port {}", c.port));
        assert_eq!(s["starttls_used"], true, "port {}", c.port);
        assert_eq!(s["tls_version"], "TLSv1.3", "port {}", c.port);
        let est: Vec<u64> = serde_json::from_value(s["est_message_bytes"].clone()).expect("est_message_bytes");
        let want: Vec<u64> = c.queue_ids.iter().map(|q| truth[q.as_str()]).collect();
        assert_eq!(s["est_messages"], c.queue_ids.len(), "port {}: {est:?} for {want:?}", c.port);
        for (e, t) in est.iter().zip(&want) {
            // A connection that will not be cached ends its last message with QUIT pipelined
            // behind the end of data: 6 bytes more, inside the tolerance.
            assert!(within_tolerance(*e, *t), "port {}: estimated {e} B for {t} B ({est:?} for {want:?})", c.port);
        }
        summary.push(format!("{} msgs {want:?} est {est:?}", c.queue_ids.len()));
    }
    // The numbers ANALYSIS.md quotes ("Postfix to Postfix").
    eprintln!("{} connections: {}", connections.len(), summary.join("; "));
}

/// One connection B logged: its client port, the queue IDs and Message-IDs of the messages it
/// carried in order, and the MAIL and DATA counts of its disconnect line.
#[derive(Debug)]
struct Connection {
    port: u16,
    queue_ids: Vec<String>,
    message_ids: Vec<String>,
    mail: usize,
    data: usize,
}

/// B's connections from A, from its log: "connect from unknown[127.0.93.1]:PORT", then
/// "QID: client=unknown[127.0.93.1]:PORT" per message, the cleanup's "QID: message-id=<ID>", and
/// "disconnect from unknown[127.0.93.1]:PORT ... mail=N rcpt=N data=N ...".
fn connections(log: &str) -> Vec<Connection> {
    const FROM: &str = "unknown[127.0.93.1]:";
    let port_after = |l: &str, key: &str| -> Option<u16> {
        let rest = &l[l.find(key)? + key.len()..];
        rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    let count = |l: &str, name: &str| -> usize {
        l.split_whitespace().find_map(|w| w.strip_prefix(&format!("{name}="))).and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    let mut out: Vec<Connection> = Vec::new();
    let mut ids: HashMap<String, String> = HashMap::new();
    for l in log.lines() {
        if let Some(p) = port_after(l, &format!(": connect from {FROM}")) {
            assert!(out.iter().all(|c| c.port != p), "client port {p} used twice: match by port fails");
            out.push(Connection { port: p, queue_ids: Vec::new(), message_ids: Vec::new(), mail: 0, data: 0 });
        } else if let Some(p) = port_after(l, &format!(": disconnect from {FROM}")) {
            let c = out.iter_mut().find(|c| c.port == p).expect("disconnect after connect");
            (c.mail, c.data) = (count(l, "mail"), count(l, "data"));
        } else if let Some(p) = port_after(l, &format!(": client={FROM}")) {
            let q = queue_id(l).expect("queue ID");
            out.iter_mut().find(|c| c.port == p).expect("message in a connection").queue_ids.push(q);
        } else if let (Some(q), Some(at)) = (queue_id(l), l.find(": message-id=<")) {
            let id = l[at + ": message-id=<".len()..].trim_end_matches('>');
            ids.insert(q, id.to_string());
        }
    }
    for c in &mut out {
        c.message_ids = c.queue_ids.iter().map(|q| ids.get(q).cloned().expect("message-id logged")).collect();
    }
    out
}

/// A's deliveries, from its log, by B's queue ID (from B's reply "250 2.0.0 Ok: queued as QID"):
/// (A's queue ID, how many times the connection had been used, 1 when not logged).
fn deliveries(log: &str) -> HashMap<String, (String, u32)> {
    let mut out = HashMap::new();
    for l in log.lines().filter(|l| l.contains(" postfix/smtp[") && l.contains("status=sent")) {
        let q = queue_id(l).expect("A's queue ID");
        let uses = l.split(", ").find_map(|f| f.strip_prefix("conn_use=")).map_or(1, |n| n.parse().expect("conn_use"));
        let theirs = l.rsplit("queued as ").next().expect("B's queue ID").trim_end_matches(')');
        out.insert(theirs.to_string(), (q, uses));
    }
    out
}

/// The queue ID a Postfix log line is about ("... postfix/x[pid]: QID: ...").
fn queue_id(line: &str) -> Option<String> {
    let rest = &line[line.find("]: ")? + 3..];
    let id = rest.split(": ").next()?;
    (id.len() >= 8 && id.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())).then(|| id.to_string())
}

/// Each stored message by Message-ID: (its bytes as they crossed the line, CRLF line ends; the
/// part after A's Received header, LF line ends as stored). B's virtual delivery prepends
/// Return-Path, X-Original-To and Delivered-To, and B's smtpd its Received header; what follows
/// is what A sent.
fn wire_messages(files: &[Vec<u8>]) -> HashMap<String, (u64, Vec<u8>)> {
    let mut out = HashMap::new();
    for f in files {
        let fields = header_fields(f);
        let names: Vec<String> = fields.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
        let added = ["return-path", "x-original-to", "delivered-to", "received"];
        assert_eq!(names[..4], added, "B's trace fields on top");
        assert_eq!(names[4], "received", "then A's Received header");
        assert!(String::from_utf8_lossy(&f[fields[4].1..fields[5].1]).contains("by mx.alpha.example (Postfix)"));
        let sent = &f[fields[4].1..];
        let crlf = sent.len() + sent.iter().filter(|&&b| b == b'\n').count();
        let id = String::from_utf8_lossy(f)
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: <").map(|i| i.trim_end_matches('>').to_string()))
            .expect("Message-ID");
        out.insert(id, (crlf as u64, f[fields[5].1..].to_vec()));
    }
    out
}

/// The header fields at the top of a stored message: (name, offset of the field's first line),
/// folded lines belonging to their field.
fn header_fields(message: &[u8]) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line == b"\n" {
            break;
        }
        if !line.starts_with(b" ") && !line.starts_with(b"\t") {
            let name = line.split(|&b| b == b':').next().unwrap_or_default();
            out.push((String::from_utf8_lossy(name).into_owned(), at));
        }
        at += line.len();
    }
    out
}

/// Message `i` of exactly `size` bytes, CRLF line ends, the last line's CRLF included, no line
/// starting with a dot (so DATA carries it unchanged): (its Message-ID, its bytes).
fn message(i: usize, size: usize) -> (String, Vec<u8>) {
    let id = format!("pfreuse-{i}@alpha.example");
    let mut m = format!(
        "From: u{i}@alpha.example\r\nTo: v{i}@beta.example\r\nSubject: reuse {i}\r\n\
         Date: Fri, 05 Dec 2025 12:00:00 +0000\r\nMessage-ID: <{id}>\r\n\r\n"
    );
    while m.len() + 72 + 4 <= size {
        m.push_str(&"y".repeat(70));
        m.push_str("\r\n");
    }
    m.push_str(&"z".repeat(size - m.len() - 2));
    m.push_str("\r\n");
    assert_eq!(m.len(), size);
    (id, m.into_bytes())
}

/// Polls `done` every 100 ms for at most `limit`; whether it came to hold.
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}
