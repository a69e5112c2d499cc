//! The two remailer-style countermeasures added beside padding and threshold batching, between
//! two real relays on loopback with STARTTLS: cover traffic (dummy messages that travel as mail
//! and are dropped by the receiving relay) and the pool mix (a seeded random part of the held
//! mail leaves at each round). Seen through the sending relay's records, the receiving relay's
//! records and mailboxes, and (cover) a live libpcap capture read by the tap. Needs root or
//! CAP_NET_RAW for the capture, as `reuse.rs`.
//!
//! Expected values come from the test's own configuration and submissions: the pool's rounds
//! are worked by hand from `batch_interval`, `pool_fraction` and the number of messages.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{RelaySpec, Scratch, relay_config, strip_trace_headers};
use records::SessionRecord;
use relay::cover::{CoverConfig, CoverSizes};
use relay::{BatchMode, DeliveryOptions, InboundTls, OutboundTls, Relay};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// What one A → B run left behind.
struct Run {
    /// A's outbound session records and B's inbound ones, by start time.
    sent: Vec<SessionRecord>,
    received: Vec<SessionRecord>,
    /// The messages the test submitted to A (Message-ID, bytes as submitted).
    submitted: Vec<(String, Vec<u8>)>,
    /// Every file in B's mailboxes.
    delivered: Vec<Vec<u8>>,
    /// Epoch seconds just before A started (its pool rounds count from there).
    a_started: f64,
    dir: Scratch,
}

/// Starts B (`beta.example`) and A (`alpha.example`, routing beta to B) on `127.0.72.{net}` and
/// `.{net + 1}`, both with STARTTLS (A requires it), A with `delivery`; submits `n` messages to
/// A; runs `during` while the relays are up (cover traffic); waits until both queues are empty.
fn run(
    name: &str,
    net: u8,
    delivery: DeliveryOptions,
    n: usize,
    during: impl AsyncFnOnce(&mut relay::RelayHandle),
) -> Run {
    let dir = Scratch::new(&format!("countermeasures-{name}"));
    let a_ip: IpAddr = format!("127.0.72.{net}").parse().expect("ip");
    let b_ip: IpAddr = format!("127.0.72.{}", net + 1).parse().expect("ip");
    let (a_dir, b_dir) = (dir.0.join("a"), dir.0.join("b"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (submitted, a_started) = rt.block_on(async {
        let b = Relay::start(relay_config(&b_dir, spec(b_ip, "beta", Vec::new()))).await.expect("relay B starts");
        let mut a_cfg = relay_config(&a_dir, spec(a_ip, "alpha", vec![("beta.example".into(), b.listen)]));
        a_cfg.outbound_tls = OutboundTls::Encrypt;
        a_cfg.delivery = delivery;
        let a_started = relay::now_secs();
        let mut a = Relay::start(a_cfg).await.expect("relay A starts");
        let submitted = submit(a.listen, n).await;
        during(&mut a).await;
        assert_eq!(a.wait_idle(Duration::from_secs(120)).await, 0, "A sent everything");
        a.shutdown(Duration::from_secs(10)).await;
        assert_eq!(b.wait_idle(Duration::from_secs(60)).await, 0, "B delivered everything");
        b.shutdown(Duration::from_secs(10)).await;
        (submitted, a_started)
    });
    let records = |d: &Path, direction: &str| {
        let mut v: Vec<SessionRecord> = common::relay_records(d);
        v.retain(|r| r.direction == direction);
        v.sort_by(|x, y| x.started_at.total_cmp(&y.started_at));
        v
    };
    let delivered = files(&b_dir.join("mailboxes")).iter().map(|p| std::fs::read(p).expect("mailbox file")).collect();
    Run {
        sent: records(&a_dir, "outbound"),
        received: records(&b_dir, "inbound"),
        submitted,
        delivered,
        a_started,
        dir,
    }
}

fn spec(ip: IpAddr, name: &str, routes: Vec<(String, SocketAddr)>) -> RelaySpec {
    RelaySpec {
        listen: SocketAddr::new(ip, 0),
        hostname: format!("mx.{name}.example"),
        inbound: InboundTls::May,
        outbound: OutboundTls::May,
        tls: true,
        routes,
        local_domains: vec![format!("{name}.example")],
        tls_settings: Default::default(),
    }
}

/// Every file under `dir`, recursively (none when it does not exist).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() { dirs.push(p) } else { out.push(p) }
        }
    }
    out
}

/// Submits `n` messages of about 1,500 bytes to A over one plaintext session, to users of
/// beta.example; returns each one's Message-ID and bytes.
async fn submit(a: SocketAddr, n: usize) -> Vec<(String, Vec<u8>)> {
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
    let mut out = Vec::new();
    for i in 0..n {
        let id = format!("cm-{i}@alpha.example");
        let mut msg =
            format!("From: u{i}@alpha.example\r\nTo: v{i}@beta.example\r\nMessage-ID: <{id}>\r\nSubject: m{i}\r\n\r\n");
        while msg.len() < 1_500 {
            msg.push_str(&format!("line {i} {}\r\n", "y".repeat(60)));
        }
        say(&mut w, &mut r, &format!("MAIL FROM:<u{i}@alpha.example>"), "250").await;
        say(&mut w, &mut r, &format!("RCPT TO:<v{i}@beta.example>"), "250").await;
        say(&mut w, &mut r, "DATA", "354").await;
        w.write_all(format!("{msg}.\r\n").as_bytes()).await.expect("write message");
        let got = reply(&mut r).await;
        assert!(got.starts_with("250"), "end of data: {got}");
        out.push((id, msg.into_bytes()));
    }
    say(&mut w, &mut r, "QUIT", "221").await;
    out
}

/// Cover traffic at 4 messages/s of 2,500 bytes for 2 s beside 4 real messages: the cover goes
/// over STARTTLS like mail, one TCP session each (reuse off), B answers it and drops it; the
/// real mail is in B's mailboxes byte for byte and nothing else is; both relays' records mark
/// the same cover messages; the tap counts a session for every message, cover included.
#[test]
fn cover_messages_travel_as_mail_and_never_reach_a_mailbox() {
    let net = 10;
    let b_ip = format!("127.0.72.{}", net + 1);
    let cap_dir = Scratch::new("countermeasures-cover-pcap");
    let pcap = cap_dir.0.join("cover.pcap");
    let capture = tap::LiveCapture::start(
        &tap::LiveOptions { filter: format!("tcp and host {b_ip}"), ..Default::default() },
        &pcap,
    )
    .expect("live capture on lo (needs root or CAP_NET_RAW)");
    let cover_bytes = 2_500;
    let seen = run("cover", net, DeliveryOptions::default(), 4, async |a| {
        a.start_cover(CoverConfig {
            rate: 4.0,
            sizes: CoverSizes::Fixed(cover_bytes),
            destinations: vec!["beta.example".into()],
            seed: 7,
        })
        .expect("cover starts");
        tokio::time::sleep(Duration::from_secs(2)).await;
        a.stop_cover();
    });
    capture.stop().expect("capture stops");

    // The real mail, byte for byte, and nothing else in B's mailboxes.
    let mut delivered: Vec<Vec<u8>> = seen.delivered.iter().map(|m| strip_trace_headers(m)).collect();
    let mut submitted: Vec<Vec<u8>> = seen.submitted.iter().map(|(_, m)| m.clone()).collect();
    delivered.sort();
    submitted.sort();
    assert_eq!(delivered, submitted, "B's mailboxes hold the 4 real messages, unchanged, and no cover");
    assert!(
        files(&seen.dir.0.join("b/mailboxes")).iter().all(|p| !p.display().to_string().contains("smtplab-cover")),
        "no mailbox for the cover address"
    );

    // Ground truth: A's hops and B's sessions list the same cover messages, apart from mail.
    let messages = |recs: &[SessionRecord], cover: bool| -> Vec<records::HopMessage> {
        recs.iter().flat_map(|r| r.messages.iter()).filter(|m| m.cover == cover).cloned().collect()
    };
    let (cover_sent, cover_received) = (messages(&seen.sent, true), messages(&seen.received, true));
    assert!(!cover_sent.is_empty(), "A sent cover traffic in 2 s at 4/s");
    for m in &cover_sent {
        assert_eq!(m.bytes, cover_bytes, "every cover message has the configured size");
        assert_eq!(m.mail_from, "smtplab-cover@alpha.example");
        assert_eq!(m.rcpt_to, ["smtplab-cover@beta.example"]);
    }
    let ids = |v: &[records::HopMessage]| {
        let mut ids: Vec<String> = v.iter().map(|m| m.message_id.clone()).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&cover_sent), ids(&cover_received), "B marked the same messages as cover");
    let mut real: Vec<String> = seen.submitted.iter().map(|(id, _)| id.clone()).collect();
    real.sort();
    assert_eq!(ids(&messages(&seen.sent, false)), real, "A's mail hops are the submitted messages");
    assert_eq!(ids(&messages(&seen.received, false)), real);
    assert!(seen.sent.iter().all(|r| r.starttls_used), "cover and mail alike went over STARTTLS");

    // The eavesdropper: one encrypted TCP session to B per message, cover included, and no
    // transaction in the clear: it cannot tell the cover from the mail.
    let b_port = seen.received.first().map(|r| r.local_addr.clone()).expect("B received sessions");
    let tapped: Vec<records::TapSession> = tap::dissect_file(&pcap)
        .expect("the tap reads the capture")
        .sessions
        .into_iter()
        .filter(|s| format!("{}:{}", s.resp_h, s.resp_p) == b_port)
        .collect();
    assert_eq!(tapped.len(), real.len() + cover_sent.len(), "a session for every message, mail and cover");
    assert!(tapped.iter().all(|s| s.starttls_used && s.transactions == 0));
    assert_eq!(tapped.iter().filter_map(|s| s.est_messages).sum::<u64>(), (real.len() + cover_sent.len()) as u64);
}

/// The pool mix worked by hand: 8 messages submitted before the first round; a round every
/// 3 s from A's start; half of the pool (rounded up) goes each round, none kept back: 4, 2, 1, 1
/// messages leave at rounds 1 to 4. Every message waits at least until round 1 (3 s after A
/// started), and each leaves within its round's interval. The same seed gives the same rounds;
/// every message is delivered.
#[test]
fn the_pool_mix_sends_a_seeded_share_each_round() {
    let interval = 3.0;
    let pool = |seed| DeliveryOptions {
        batch_mode: BatchMode::Pool,
        batch_interval: interval,
        pool_fraction: 0.5,
        seed,
        ..Default::default()
    };
    let rounds = |seen: &Run| -> BTreeMap<u64, Vec<String>> {
        let mut by_round: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for hop in &seen.sent {
            let round = ((hop.started_at - seen.a_started) / interval).floor() as u64;
            by_round.entry(round).or_default().extend(hop.messages.iter().map(|m| m.message_id.clone()));
        }
        by_round.values_mut().for_each(|v| v.sort());
        by_round
    };
    let first = run("pool-a", 20, pool(11), 8, async |_| {});
    let submitted_by = first.sent.iter().map(|r| r.started_at).fold(f64::INFINITY, f64::min);
    assert!(submitted_by >= first.a_started + interval, "nothing leaves before the first round");
    let r1 = rounds(&first);
    let counts: Vec<(u64, usize)> = r1.iter().map(|(k, v)| (*k, v.len())).collect();
    assert_eq!(counts, [(1, 4), (2, 2), (3, 1), (4, 1)], "rounds: {r1:?}");
    assert_eq!(first.delivered.len(), 8, "every message delivered");
    assert!(first.sent.iter().all(|r| r.outcome == "delivered" && r.starttls_used));

    let again = run("pool-b", 30, pool(11), 8, async |_| {});
    assert_eq!(rounds(&again), r1, "the same seed draws the same rounds");
    assert_eq!(again.delivered.len(), 8);
}
