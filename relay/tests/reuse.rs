//! Outbound connection reuse, and size padding, between two real relays on loopback, with
//! STARTTLS, seen three ways: the sending relay's session records (ground truth), the receiving relay's records,
//! and a live libpcap capture read by the tap (the eavesdropper). Needs root or CAP_NET_RAW
//! for the capture (CI runs as root); without it the tests fail and say so.
//!
//! Expected values come from outside the code under test: the messages the test submits (their
//! number, order and sizes), the receiving relay's own record of what arrived, the TCP
//! connections the capture saw, and Postfix's documented limit semantics worked by hand.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use common::{RelaySpec, Scratch, relay_config};
use records::{SessionRecord, TapSession};
use relay::{ConnectionReuse, DeliveryOptions, InboundTls, OutboundTls, Relay};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One run: what the sender recorded, what the receiver recorded, what the tap saw.
struct Seen {
    sent: Vec<SessionRecord>,
    received: Vec<SessionRecord>,
    tap: Vec<TapSession>,
    /// The messages the test submitted, by Message-ID, in submission order.
    submitted: Vec<String>,
    /// The mailbox files B wrote.
    delivered: Vec<Vec<u8>>,
    /// Wall-clock time (epoch seconds) just before each message's MAIL FROM was sent to A.
    submit_started: Vec<f64>,
}

struct Case {
    name: &'static str,
    /// Third octet of the pair's loopback addresses, unique per test (the capture filters on it).
    net: u8,
    tls_version: &'static str,
    /// The one cipher suite both relays allow (empty: rustls' defaults).
    cipher: &'static str,
    delivery: DeliveryOptions,
    sizes: Vec<usize>,
}

/// Reuse always on for the test's destination, one delivery at a time (so every message
/// waits for the one connection), and an idle limit long enough that a slow machine does not
/// close the connection between two submissions: what a session carries then depends on the
/// limits alone, not on timing.
fn reuse(pipelining: bool) -> DeliveryOptions {
    DeliveryOptions {
        connection_reuse: ConnectionReuse::Always,
        connection_cache_time_limit: 600.0,
        destination_concurrency_limit: 1,
        pipelining,
        ..Default::default()
    }
}

fn run(case: &Case) -> Seen {
    let dir = Scratch::new(&format!("reuse-{}", case.name));
    let a_ip: IpAddr = format!("127.0.{}.1", case.net).parse().expect("ip");
    let b_ip: IpAddr = format!("127.0.{}.2", case.net).parse().expect("ip");
    let tls_settings = relay::TlsSettings {
        versions: vec![case.tls_version.into()],
        ciphers: if case.cipher.is_empty() { Vec::new() } else { vec![case.cipher.into()] },
        ..Default::default()
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let pcap = dir.0.join("hop.pcap");
    let capture = tap::LiveCapture::start(
        &tap::LiveOptions { filter: format!("tcp and host {b_ip}"), ..Default::default() },
        &pcap,
    )
    .expect("live capture on lo (needs root or CAP_NET_RAW)");
    let (a_dir, b_dir) = (dir.0.join("a"), dir.0.join("b"));
    let (submitted, submit_started) = rt.block_on(async {
        let b = Relay::start(relay_config(
            &b_dir,
            RelaySpec {
                listen: SocketAddr::new(b_ip, 0),
                hostname: "mx.beta.example".into(),
                inbound: InboundTls::May,
                outbound: OutboundTls::May,
                tls: true,
                routes: Vec::new(),
                local_domains: vec!["beta.example".into()],
                tls_settings: tls_settings.clone(),
            },
        ))
        .await
        .expect("relay B starts");
        let mut a_cfg = relay_config(
            &a_dir,
            RelaySpec {
                listen: SocketAddr::new(a_ip, 0),
                hostname: "mx.alpha.example".into(),
                inbound: InboundTls::May,
                outbound: OutboundTls::Encrypt,
                tls: true,
                routes: vec![("beta.example".into(), b.listen)],
                local_domains: vec!["alpha.example".into()],
                tls_settings,
            },
        );
        a_cfg.delivery = case.delivery.clone();
        let a = Relay::start(a_cfg).await.expect("relay A starts");
        let submitted = submit(a.listen, &case.sizes).await;
        assert_eq!(a.wait_idle(Duration::from_secs(120)).await, 0, "A delivered everything");
        // Shutting A down closes its cached session (QUIT) and writes that session's record.
        a.shutdown(Duration::from_secs(10)).await;
        assert_eq!(b.wait_idle(Duration::from_secs(60)).await, 0, "B delivered everything");
        b.shutdown(Duration::from_secs(10)).await;
        submitted
    });
    capture.stop().expect("capture stops");
    let dissection = tap::dissect_file(&pcap).expect("the tap reads the capture");
    assert!(dissection.error.is_none(), "{:?}", dissection.error);
    let outbound = |d: &Path| -> Vec<SessionRecord> {
        let mut v: Vec<SessionRecord> = records::read_jsonl(&d.join("sessions.jsonl")).expect("records");
        v.sort_by(|x, y| x.started_at.total_cmp(&y.started_at));
        v
    };
    let sent: Vec<SessionRecord> = outbound(&a_dir).into_iter().filter(|r| r.direction == "outbound").collect();
    let received: Vec<SessionRecord> = outbound(&b_dir).into_iter().filter(|r| r.direction == "inbound").collect();
    let b_port = received.first().map(|r| r.local_addr.clone()).unwrap_or_default();
    let tap = dissection.sessions.into_iter().filter(|s| format!("{}:{}", s.resp_h, s.resp_p) == b_port).collect();
    let mut delivered = Vec::new();
    let mut dirs = vec![b_dir.join("mailboxes")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("mailbox dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "eml") {
                delivered.push(std::fs::read(&p).expect("mailbox file"));
            }
        }
    }
    Seen { sent, received, tap, submitted, delivered, submit_started }
}

/// `message` without its first header field (the Received line the receiver put on top,
/// continuation lines included).
fn without_first_field(message: &[u8]) -> &[u8] {
    let mut at = 0;
    let mut first = true;
    for line in message.split_inclusive(|&b| b == b'\n') {
        if !first && !line.starts_with(b" ") && !line.starts_with(b"\t") {
            break;
        }
        first = false;
        at += line.len();
    }
    &message[at..]
}

/// Submits one message of each size to `a` over one plaintext session, for users of
/// beta.example. Each message is lines of 70 letters (no line starts with a dot, so the size
/// on the wire is the size plus the end of data). Returns the Message-IDs in order, and the time
/// just before each message's MAIL FROM.
async fn submit(a: SocketAddr, sizes: &[usize]) -> (Vec<String>, Vec<f64>) {
    let tcp = TcpStream::connect(a).await.expect("connect to A");
    let (r, mut w) = tcp.into_split();
    let mut r = BufReader::new(r);
    async fn reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).await.expect("read a reply");
            assert!(!line.is_empty(), "A closed the submission session");
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }
    let say = async |w: &mut tokio::net::tcp::OwnedWriteHalf,
                     r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
                     line: &str,
                     code: &str| {
        w.write_all(format!("{line}\r\n").as_bytes()).await.expect("write");
        let got = reply(r).await;
        assert!(got.starts_with(code), "{line}: {got}");
    };
    assert!(reply(&mut r).await.starts_with("220"));
    say(&mut w, &mut r, "EHLO submit.alpha.example", "250").await;
    let (mut ids, mut started) = (Vec::new(), Vec::new());
    for (i, &size) in sizes.iter().enumerate() {
        // Records name a message by its Message-ID without the angle brackets.
        let id = format!("reuse-{i}@alpha.example");
        let mut msg = format!("From: u{i}@alpha.example\r\nTo: v{i}@beta.example\r\nMessage-ID: <{id}>\r\n\r\n");
        while msg.len() + 72 <= size {
            msg.push_str(&"x".repeat(70));
            msg.push_str("\r\n");
        }
        started.push(relay::now_secs());
        say(&mut w, &mut r, &format!("MAIL FROM:<u{i}@alpha.example>"), "250").await;
        say(&mut w, &mut r, &format!("RCPT TO:<v{i}@beta.example>"), "250").await;
        say(&mut w, &mut r, "DATA", "354").await;
        msg.push_str(".\r\n");
        w.write_all(msg.as_bytes()).await.expect("write message");
        let got = reply(&mut r).await;
        assert!(got.starts_with("250"), "end of data: {got}");
        ids.push(id);
    }
    say(&mut w, &mut r, "QUIT", "221").await;
    (ids, started)
}

/// ANALYSIS.md's tolerance for the estimated size: 1% + 8 bytes.
fn within_tolerance(estimate: u64, truth: u64) -> bool {
    estimate.abs_diff(truth) as f64 <= truth as f64 * 0.01 + 8.0
}

/// The sender's sessions, each as the Message-IDs it carried, in order.
fn carried(sessions: &[SessionRecord]) -> Vec<Vec<String>> {
    sessions.iter().map(|s| s.messages.iter().map(|m| m.message_id.clone()).collect()).collect()
}

/// N messages queued for one next hop travel in one TCP session, in the order the receiver
/// took them, and the tap's estimates on that session match the truth.
fn one_session_carries_all(case: Case) {
    let seen = run(&case);
    let n = case.sizes.len();
    assert_eq!(seen.sent.len(), 1, "{}: one outbound session: {:?}", case.name, carried(&seen.sent));
    let hop = &seen.sent[0];
    assert_eq!(hop.outcome, "delivered");
    assert_eq!(hop.tls_version.as_deref(), Some(case.tls_version));
    let mut ids = carried(&seen.sent).remove(0);
    // The receiver's records: one inbound session, carrying them in the same order.
    assert_eq!(seen.received.len(), 1, "{}: B saw one session", case.name);
    let at_b: Vec<String> = seen.received[0].messages.iter().map(|m| m.message_id.clone()).collect();
    assert_eq!(ids, at_b, "the sender's record keeps the order the receiver saw");
    ids.sort();
    let mut submitted = seen.submitted.clone();
    submitted.sort();
    assert_eq!(ids, submitted, "every submitted message, once");
    // The eavesdropper: one TCP connection, and its estimates.
    assert_eq!(seen.tap.len(), 1, "{}: the capture holds one TCP session to B", case.name);
    let t = &seen.tap[0];
    assert_eq!(format!("{}:{}", t.orig_h, t.orig_p), hop.local_addr, "the tap's session is the hop");
    assert_eq!(t.est_messages, Some(n as u64), "{}: estimated count", case.name);
    assert_eq!(t.est_message_bytes.len(), n);
    for (est, m) in t.est_message_bytes.iter().zip(&hop.messages) {
        assert!(within_tolerance(*est, m.bytes), "{}: estimated {est} B for {} B", case.name, m.bytes);
    }
}

const SIZES: [usize; 5] = [700, 3_000, 12_000, 40_000, 1_500];

#[test]
fn reuse_tls13_pipelined_one_session_estimates_hold() {
    one_session_carries_all(Case {
        name: "13p",
        net: 131,
        tls_version: "TLSv1.3",
        cipher: "",
        delivery: reuse(true),
        sizes: SIZES.to_vec(),
    });
}

#[test]
fn reuse_tls13_without_pipelining_one_session_estimates_hold() {
    one_session_carries_all(Case {
        name: "13n",
        net: 132,
        tls_version: "TLSv1.3",
        cipher: "",
        delivery: reuse(false),
        sizes: SIZES.to_vec(),
    });
}

#[test]
fn reuse_tls12_pipelined_one_session_estimates_hold() {
    one_session_carries_all(Case {
        name: "12p",
        net: 133,
        tls_version: "TLSv1.2",
        cipher: "",
        delivery: reuse(true),
        sizes: SIZES.to_vec(),
    });
}

#[test]
fn reuse_tls12_without_pipelining_one_session_estimates_hold() {
    one_session_carries_all(Case {
        name: "12n",
        net: 134,
        tls_version: "TLSv1.2",
        cipher: "",
        delivery: reuse(false),
        sizes: SIZES.to_vec(),
    });
}

/// postconf(5), smtp_connection_reuse_count_limit: "With a reuse count limit of N, a
/// connection is used up to N+1 times." With N = 3 and 7 messages, one at a time: the first
/// connection carries 4 (used, then reused 3 times), the second the remaining 3. The second
/// connection's TLS handshake resumes the first's session (rustls' client cache is one per
/// relay, kept across connections).
#[test]
fn reuse_count_limit_three_splits_seven_messages_four_and_three_and_resumes_tls() {
    let case = Case {
        name: "count",
        net: 135,
        tls_version: "TLSv1.3",
        cipher: "",
        delivery: DeliveryOptions { connection_reuse_count_limit: 3, ..reuse(true) },
        sizes: vec![1_000, 2_000, 3_000, 4_000, 5_000, 6_000, 7_000],
    };
    let seen = run(&case);
    let per_session: Vec<usize> = seen.sent.iter().map(|s| s.messages.len()).collect();
    assert_eq!(per_session, vec![4, 3], "{:?}", carried(&seen.sent));
    assert_eq!(seen.tap.len(), 2, "the capture holds two TCP sessions to B");
    let mut est: Vec<Option<u64>> = seen.tap.iter().map(|t| t.est_messages).collect();
    est.sort();
    assert_eq!(est, vec![Some(3), Some(4)]);
    assert!(!seen.sent[0].tls_resumed, "the first handshake is a full one");
    assert!(seen.sent[1].tls_resumed, "the second connection resumes the first's TLS session");
}

/// TLS 1.2 resumption too (session IDs: rustls' server keeps a session cache by default).
#[test]
fn reuse_time_limit_zero_closes_after_each_delivery_and_tls12_resumes() {
    let case = Case {
        name: "time12",
        net: 136,
        tls_version: "TLSv1.2",
        cipher: "",
        // A reuse time limit of 0: no connection is young enough to be kept.
        delivery: DeliveryOptions { connection_reuse_time_limit: 0.0, ..reuse(true) },
        sizes: vec![1_000, 2_000, 3_000],
    };
    let seen = run(&case);
    let per_session: Vec<usize> = seen.sent.iter().map(|s| s.messages.len()).collect();
    assert_eq!(per_session, vec![1, 1, 1]);
    assert_eq!(seen.tap.len(), 3);
    let resumed: Vec<bool> = seen.sent.iter().map(|s| s.tls_resumed).collect();
    assert_eq!(resumed, vec![false, true, true]);
}

/// Padding: every transaction's client bytes inside TLS end on a bucket. From the capture: a
/// session's client application-data records, each less the record overhead worked by hand
/// (TLS 1.3 AES-128-GCM: 5-byte header + 1 inner content type + 16-byte tag = 22; TLS 1.2
/// AES-128-GCM: 5 + 8-byte explicit nonce + 16 = 29), less what is not the transaction: in
/// TLS 1.3 the client's Finished (4 + 32 = 36 bytes) and its close_notify (2), and in both the
/// EHLO after STARTTLS and QUIT (6). One message per session (reuse off), so a session's
/// remainder is one transaction. The message arrives unchanged (the receiver's hash of what it
/// took is the sender's). `hides`: whether the eavesdropper's size estimate is off by more than
/// its tolerance. With pipelining the first NOOP rides in the message's burst and it is; without,
/// every NOOP is a burst of its own after the message's reply, the DATA rule still reads the
/// message's burst alone, and the estimate stays exact: padding after the message pads the
/// transaction, not the burst an eavesdropper sizes.
fn padded_transactions_fall_on_buckets(case: Case, on_bucket: fn(u64) -> bool, hides: bool) {
    let (tls13, overhead) = match case.tls_version {
        "TLSv1.3" => (true, 22),
        _ => (false, 29),
    };
    let ehlo = "EHLO mx.alpha.example\r\n".len() as u64;
    let seen = run(&case);
    assert_eq!(seen.sent.len(), case.sizes.len(), "one session per message");
    assert_eq!(seen.tap.len(), case.sizes.len());
    for hop in &seen.sent {
        let t = seen
            .tap
            .iter()
            .find(|t| format!("{}:{}", t.orig_h, t.orig_p) == hop.local_addr)
            .expect("the tap saw the hop");
        let mut client: Vec<u64> =
            t.tls_app_records.iter().filter(|r| r.orig).map(|r| u64::from(r.len) - overhead).collect();
        if tls13 {
            assert_eq!(client.first(), Some(&36), "TLS 1.3 Finished");
            assert_eq!(client.last(), Some(&2), "close_notify");
            client.remove(0);
            client.pop();
        }
        assert_eq!(client.first(), Some(&ehlo), "EHLO");
        assert_eq!(client.last(), Some(&6), "QUIT");
        let transaction: u64 = client[1..client.len() - 1].iter().sum();
        let m = &hop.messages[0];
        assert!(transaction > m.bytes && on_bucket(transaction), "{transaction} B for a {} B message", m.bytes);
        let stored: Vec<String> = seen.delivered.iter().map(|f| relay::sha256_hex(without_first_field(f))).collect();
        assert!(stored.contains(&m.sha256), "delivered byte for byte as the sender relayed it");
        let est = t.est_message_bytes.first().copied().unwrap_or(0);
        assert_eq!(!within_tolerance(est, m.bytes), hides, "estimated {est} B for {} B", m.bytes);
    }
}

#[test]
fn padding_to_powers_of_two_tls13_pipelined() {
    padded_transactions_fall_on_buckets(
        Case {
            name: "pad13",
            net: 137,
            tls_version: "TLSv1.3",
            cipher: "TLS_AES_128_GCM_SHA256",
            delivery: DeliveryOptions { padding: relay::padding::Padding::PowerOfTwo, ..Default::default() },
            sizes: vec![3_000, 5_000, 20_000],
        },
        u64::is_power_of_two,
        true,
    );
}

#[test]
fn padding_to_fixed_4k_buckets_tls12_without_pipelining() {
    padded_transactions_fall_on_buckets(
        Case {
            name: "pad12",
            net: 138,
            tls_version: "TLSv1.2",
            cipher: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            delivery: DeliveryOptions {
                padding: relay::padding::Padding::Fixed,
                padding_bucket: 4096,
                pipelining: false,
                ..Default::default()
            },
            sizes: vec![3_000, 5_000, 20_000],
        },
        |n| n % 4096 == 0,
        false,
    );
}

/// Batching by size: with `batch_size = 3` (no interval, reuse off) no message leaves A before
/// the last of its batch is submitted. A causal fact, no timing: every session to B starts after
/// the test began to submit the third message (first batch) or the sixth (second batch).
#[test]
fn batching_holds_each_destinations_mail_until_its_batch_is_full() {
    let case = Case {
        name: "batch",
        net: 139,
        tls_version: "TLSv1.3",
        cipher: "",
        delivery: DeliveryOptions { batch_size: 3, ..Default::default() },
        sizes: vec![1_000; 6],
    };
    let seen = run(&case);
    assert_eq!(seen.received.len(), 6, "six sessions, one per message (reuse off)");
    for r in &seen.received {
        let id = &r.messages[0].message_id;
        let i: usize = id.trim_start_matches("reuse-").split('@').next().and_then(|n| n.parse().ok()).expect("id");
        let last_of_batch = (i / 3) * 3 + 2;
        assert!(
            r.started_at > seen.submit_started[last_of_batch],
            "message {i} left before message {last_of_batch} of its batch was submitted"
        );
    }
}
