//! Durability: `kill -9` the relay process (`smtplab relay`) at pseudo-random moments while a
//! load generator submits mail, restart it, and check that every message that got a 250 is
//! delivered, at least once and never written to a mailbox twice; once from a fresh spool, once
//! from a spool holding messages in the old two-file layout, which the relay must convert.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const OLD_MESSAGES: usize = 5;

fn start_relay(dir: &Path, listen: &str) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_smtplab"))
        .args(["relay", "--listen", listen, "--hostname", "relay.crash.example", "--local-domain", "dest.example"])
        .arg("--spool")
        .arg(dir.join("spool"))
        .arg("--mailbox-dir")
        .arg(dir.join("mailboxes"))
        .arg("--records")
        .arg(dir.join("sessions.jsonl"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start smtplab relay");
    let addr: SocketAddr = listen.parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
        assert!(Instant::now() < deadline, "relay did not start listening");
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

/// Messages queued as a relay before the one-file layout left them: `<qid>.msg` with the
/// message and `<qid>.env` with the envelope (the commit point), written here by hand.
fn plant_old_layout(dir: &Path) -> Vec<String> {
    let queue = dir.join("spool/queue");
    std::fs::create_dir_all(&queue).expect("queue dir");
    (0..OLD_MESSAGES)
        .map(|n| {
            let id = format!("old-{n}@load.example");
            let qid = format!("0LD{n:04}");
            let message = format!("Message-ID: <{id}>\r\nSubject: queued before the upgrade\r\n\r\nold {n}\r\n");
            std::fs::write(queue.join(format!("{qid}.msg")), message).expect("msg");
            let env = format!(
                r#"{{"qid":"{qid}","message_id":"<{id}>","mail_from":"load@load.example","pending":["user@dest.example"],"received_at":1.0,"attempts":0,"deliveries":0}}"#
            );
            std::fs::write(queue.join(format!("{qid}.env")), env).expect("env");
            id
        })
        .collect()
}

/// Submits messages one after another until the connection breaks; returns the Message-IDs
/// that got a 250 after the data.
fn submit_until_broken(addr: &str, next_id: &mut u64, stop: &AtomicBool) -> Vec<String> {
    let mut acked = Vec::new();
    let Ok(mut tcp) = TcpStream::connect(addr) else { return acked };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut reply = |tcp: &mut TcpStream| -> Option<u16> {
        loop {
            if let Some(end) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                if line.get(3) == Some(&b'-') {
                    continue;
                }
                return std::str::from_utf8(line.get(..3)?).ok()?.parse().ok();
            }
            let mut chunk = [0u8; 1024];
            match tcp.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    if reply(&mut tcp) != Some(220) || tcp.write_all(b"EHLO load.example\r\n").is_err() || reply(&mut tcp) != Some(250)
    {
        return acked;
    }
    while !stop.load(Ordering::Relaxed) {
        let id = format!("crash-{}@load.example", *next_id);
        *next_id += 1;
        let body = format!(
            "MAIL FROM:<load@load.example>\r\nRCPT TO:<user@dest.example>\r\nDATA\r\n\
             Message-ID: <{id}>\r\nSubject: crash test\r\n\r\n{}\r\n.\r\n",
            "x".repeat(2000)
        );
        if tcp.write_all(body.as_bytes()).is_err() {
            return acked;
        }
        let ok = reply(&mut tcp) == Some(250) && reply(&mut tcp) == Some(250) && reply(&mut tcp) == Some(354);
        if !ok || reply(&mut tcp) != Some(250) {
            return acked;
        }
        acked.push(id);
    }
    acked
}

fn delivered_ids(dir: &Path) -> BTreeMap<String, usize> {
    let mbox = dir.join("mailboxes/dest.example/user");
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(mbox).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        if let Some(id) = text.lines().find_map(|l| l.strip_prefix("Message-ID: <")).map(|l| l.trim_end_matches('>')) {
            *out.entry(id.to_string()).or_insert(0) += 1;
        }
    }
    out
}

/// Messages still queued, counted from the spool's file names.
fn queued(dir: &Path) -> usize {
    relay::spool::count_queued(&dir.join("spool"))
}

/// `cycles` rounds of: start the relay on `addr`, submit until it is killed (`kill -9`) after a
/// delay from a fixed pseudo-random schedule (20–170 ms, xorshift from `seed`: reproducible, no
/// RNG crate); then one last start that drains the spool (at most 60 s). Returns the Message-IDs
/// that got a 250.
fn crash_cycles(dir: &Path, addr: &'static str, cycles: u64, seed: u64) -> BTreeSet<String> {
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut next_id = 0u64;
    let mut x = seed;
    for _ in 0..cycles {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let delay = Duration::from_millis(20 + x % 150);
        let mut relay = start_relay(dir, addr);
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, acked2) = (stop.clone(), acked.clone());
        let mut id = next_id;
        let load = std::thread::spawn(move || {
            let got = submit_until_broken(addr, &mut id, &stop2);
            acked2.lock().expect("lock").extend(got);
            id
        });
        std::thread::sleep(delay);
        relay.kill().expect("kill -9");
        let _ = relay.wait();
        stop.store(true, Ordering::Relaxed);
        next_id = load.join().expect("load thread") + 1;
    }
    let mut relay = start_relay(dir, addr);
    let deadline = Instant::now() + Duration::from_secs(60);
    while queued(dir) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = relay.kill();
    let _ = relay.wait();
    acked.lock().expect("lock").iter().cloned().collect()
}

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

/// A fresh spool: every message that got a 250 is delivered, and a repeat delivery after a crash
/// between delivery and dequeue is recognised (local delivery is named by queue id), recorded and
/// not written a second time.
#[test]
fn kill_dash_nine_loses_no_acknowledged_message() {
    const CYCLES: u64 = 50;
    let dir = fresh_dir("smtplab-crash");
    let acked = crash_cycles(&dir, "127.0.90.1:2525", CYCLES, 0x9E37_79B9_7F4A_7C15);
    let delivered = delivered_ids(&dir);
    let lost: Vec<&String> = acked.iter().filter(|id| !delivered.contains_key(*id)).collect();
    let duplicates: usize = delivered.values().filter(|&&n| n > 1).count();
    let records = std::fs::read_to_string(dir.join("sessions.jsonl")).unwrap_or_default();
    let recorded_duplicates = records.lines().filter(|l| l.contains("\"outcome\":\"duplicate\"")).count();
    eprintln!(
        "crash test: {CYCLES} kill -9 cycles, {} messages acknowledged, {} delivered, {} in a mailbox twice, \
         {} repeat deliveries recognised and recorded, {} lost",
        acked.len(),
        delivered.len(),
        duplicates,
        recorded_duplicates,
        lost.len()
    );
    assert_eq!(duplicates, 0, "a message written to a mailbox twice");
    assert!(acked.len() >= CYCLES as usize, "the load generator got mail through: {}", acked.len());
    assert!(lost.is_empty(), "acknowledged but never delivered: {lost:?}");
    assert_eq!(queued(&dir), 0, "the spool drained");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A spool that starts with messages in the old two-file layout (`.msg` + `.env`, as spools
/// written before the one-file layout hold them): the restarted relay converts and delivers them
/// too, whatever the kills interrupt, and leaves only reusable `.free` files behind.
#[test]
fn kill_dash_nine_loses_no_acknowledged_message_and_converts_the_old_layout() {
    const CYCLES: u64 = 30;
    let dir = fresh_dir("smtplab-spool-crash");
    let old = plant_old_layout(&dir);
    assert_eq!(queued(&dir), OLD_MESSAGES, "the old layout is counted as queued");
    let acked = crash_cycles(&dir, "127.0.91.7:2525", CYCLES, 0x2545_F491_4F6C_DD1D);
    let delivered = delivered_ids(&dir);
    let lost: Vec<&String> = acked.iter().chain(&old).filter(|id| !delivered.contains_key(*id)).collect();
    let duplicates: usize = delivered.values().filter(|&&n| n > 1).count();
    eprintln!(
        "spool crash test: {CYCLES} kill -9 cycles, {} messages acknowledged and {OLD_MESSAGES} of the old layout, \
         {} delivered, {} in a mailbox twice, {} lost",
        acked.len(),
        delivered.len(),
        duplicates,
        lost.len()
    );
    assert_eq!(duplicates, 0, "a message written to a mailbox twice");
    assert!(acked.len() >= CYCLES as usize, "the load generator got mail through: {}", acked.len());
    assert!(lost.is_empty(), "acknowledged (or queued in the old layout) but never delivered: {lost:?}");
    assert_eq!(queued(&dir), 0, "the spool drained");
    // Only finished messages' files kept for reuse (`.free`): no queue file, no debris of the
    // old layout, no temporary file.
    let left: Vec<PathBuf> = std::fs::read_dir(dir.join("spool/queue"))
        .expect("queue")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_none_or(|x| x != "free"))
        .collect();
    assert!(left.is_empty(), "left in the queue directory: {left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
