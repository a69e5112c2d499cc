//! `smtplab tap` as a user runs it: the table with the system-to-system volume, Parquet output,
//! argument errors, and a live capture on loopback while a small SMTP exchange happens (root).
//! No timing is asserted: the machines running this are shared and noisy.

mod common;

use common::{is_root, require_root};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn smtplab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smtplab")).args(args).output().expect("run smtplab")
}

fn data(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(rel).display().to_string()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn table_ends_with_the_system_to_system_volume() {
    let r = smtplab(&["tap", &data("pcaps/ndpi/smtp-starttls.pcap")]);
    let out = text(&r.stdout);
    assert!(r.status.success(), "{}", text(&r.stderr));
    let volume = out.split("System-to-system volume").nth(1).expect("volume table printed");
    let rows: Vec<Vec<&str>> = volume.lines().skip(2).map(|l| l.split_whitespace().collect()).collect();
    // One STARTTLS session each over IPv4 and IPv6: volume and names stay visible, no transaction.
    let v4 = rows.iter().find(|r| r.first() == Some(&"10.0.0.1")).expect("IPv4 pair");
    assert_eq!(v4[..4], ["10.0.0.1", "173.194.68.26", "1", "1"], "{volume}");
    assert!(v4.contains(&"mx.google.com"), "server name from the banner: {volume}");
    let v6 = rows.iter().find(|r| r.first().is_some_and(|a| a.starts_with("2003:"))).expect("IPv6 pair");
    // Columns: addresses, counts, two byte counts with their units, then the names: EHLO,
    // banner, SNI, and those of the certificate sent in the clear (TLS 1.2 and earlier).
    assert_eq!(v6.get(11), Some(&"dovecot.weberlab.de"), "SNI: {volume}");
    assert_eq!(v6.get(12), Some(&"jw-vm08-int-dns"), "the certificate's CN (it has no SAN): {volume}");
    let v4_cert = v4.get(12).expect("certificate names");
    assert!(
        v4_cert.starts_with("alt1.aspmx.l.google.com,") && v4_cert.ends_with(",..."),
        "SAN names, bounded: {volume}"
    );
    assert!(out.contains("2 SMTP sessions, 0 transactions in the clear"), "{out}");
}

#[test]
fn parquet_writes_every_table_into_out() {
    let dir = scratch("parquet");
    let out = dir.join("tables");
    let r =
        smtplab(&["tap", &data("pcaps/zeek/smtp.pcap"), "--format", "parquet", "--out", &out.display().to_string()]);
    assert!(r.status.success(), "{}", text(&r.stderr));
    let tables = ["sessions.parquet", "transactions.parquet", "volume.parquet", "tls_records.parquet"];
    for name in tables {
        let bytes = std::fs::read(out.join(name)).expect(name);
        assert!(bytes.len() > 8 && bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"), "{name} is Parquet");
    }
    let left: Vec<_> = std::fs::read_dir(&out).expect("out").flatten().map(|e| e.file_name()).collect();
    assert_eq!(left.len(), tables.len(), "no scratch files left behind: {left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_truncated_capture_keeps_the_records_before_the_cut_in_every_format() {
    let dir = scratch("truncated");
    let bytes = std::fs::read(data("pcaps/zeek/smtp.pcap")).expect("pcap");
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 700]).expect("write");
    let cut = cut.display().to_string();
    let r = smtplab(&["tap", &cut]);
    assert_eq!(r.status.code(), Some(1));
    assert!(text(&r.stderr).contains("cut.pcap: corrupt or truncated capture at byte offset"), "{}", text(&r.stderr));
    assert!(text(&r.stdout).contains("System-to-system volume"), "{}", text(&r.stdout));
    let out = dir.join("tables").display().to_string();
    let r = smtplab(&["tap", &cut, "--format", "parquet", "--out", &out]);
    assert_eq!(r.status.code(), Some(1), "{}", text(&r.stderr));
    assert!(dir.join("tables/sessions.parquet").is_file(), "records before the cut written");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn arguments_that_do_not_go_together_are_refused() {
    let pcap = data("pcaps/zeek/smtp.pcap");
    for args in [vec!["tap"], vec!["tap", pcap.as_str(), "--live", "lo"], vec!["tap", "--duration", "3"]] {
        let r = smtplab(&args);
        assert_eq!(r.status.code(), Some(2), "{args:?} is a usage error: {}", text(&r.stderr));
    }
    for flag in [["--duration", "3"], ["--filter", "tcp"], ["--write", "/tmp/x.pcap"]] {
        let r = smtplab(&["tap", &pcap, flag[0], flag[1]]);
        assert!(!r.status.success(), "{flag:?} without --live");
        assert!(text(&r.stderr).contains("go with --live"), "{}", text(&r.stderr));
    }
    let r = smtplab(&["tap", &pcap, "--out", "/tmp/nowhere"]);
    assert!(!r.status.success());
    assert!(text(&r.stderr).contains("--out is for --format parquet"), "{}", text(&r.stderr));
}

/// Inputs a reviewer found: each is an error that says what is wrong, once, and never a panic.
#[test]
fn bad_inputs_are_named_once_and_never_panic() {
    let dir = scratch("bad-inputs");
    let d = dir.display().to_string();
    let r = smtplab(&["tap", &d, "--format", "jsonl"]);
    let err = text(&r.stderr);
    assert!(!r.status.success() && err.contains(&format!("{d}: is a directory")), "{err}");

    let file = dir.join("not-a-dir");
    std::fs::write(&file, "").expect("file");
    let pcap = data("pcaps/zeek/smtp.pcap");
    let r = smtplab(&["tap", &pcap, "--format", "parquet", "--out", &file.display().to_string()]);
    let err = text(&r.stderr);
    assert!(!r.status.success() && err.contains("is not a directory"), "{err}");

    // An analysis input whose cause used to be printed twice.
    let run = dir.join("run");
    std::fs::create_dir_all(run.join("truth")).expect("run");
    std::fs::create_dir_all(run.join("tap")).expect("tap");
    std::fs::write(run.join("truth/messages.jsonl"), "{\"seq\": \"x\"}\n").expect("truth");
    let r = smtplab(&["analyze", &run.display().to_string()]);
    let err = text(&r.stderr);
    assert!(!r.status.success() && !err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    let cause = lines[0].rsplit(": ").next().expect("cause");
    assert_eq!(lines[0].matches(cause).count(), 1, "cause said once: {err}");

    if is_root() {
        let r = smtplab(&["tap", "--live", "lo", "--duration", "1e300"]);
        let err = text(&r.stderr);
        assert!(!r.status.success() && !err.contains("panicked"), "{err}");
        assert!(err.contains("--duration must be a positive number of seconds"), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

const PORT: u16 = 18525;
const MESSAGE: &str = "From: alice@a.test\r\nTo: bob@b.test\r\nSubject: live tap\r\n\r\nhello over loopback\r\n";

/// Reads one CRLF line (bounded by the stream's read timeout).
fn line(r: &mut BufReader<TcpStream>) -> String {
    let mut l = String::new();
    r.read_line(&mut l).expect("read a line");
    l
}

/// A one-message SMTP server: answers each command, reads the DATA body to its final dot.
fn fake_server(listener: TcpListener) {
    listener.set_nonblocking(true).expect("nonblocking listener");
    let deadline = Instant::now() + Duration::from_secs(20);
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("no client came: {e}"),
        }
    };
    stream.set_nonblocking(false).expect("blocking stream");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut w = stream.try_clone().expect("clone");
    let mut r = BufReader::new(stream);
    w.write_all(b"220 mx.b.test ESMTP fake\r\n").expect("greeting");
    loop {
        let cmd = line(&mut r);
        let verb = cmd.get(..4).unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-mx.b.test\r\n250 PIPELINING\r\n",
            "MAIL" | "RCPT" => b"250 ok\r\n",
            "DATA" => {
                w.write_all(b"354 go ahead\r\n").expect("354");
                while line(&mut r) != ".\r\n" {}
                b"250 queued\r\n"
            }
            "QUIT" => {
                w.write_all(b"221 bye\r\n").expect("221");
                return;
            }
            "" => return,
            _ => b"500 what\r\n",
        };
        w.write_all(reply).expect("reply");
    }
}

fn fake_client() {
    let s = TcpStream::connect(("127.0.0.1", PORT)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::new(s);
    let mut expect = |code: &str| {
        let mut l = line(&mut r);
        while l.get(3..4) == Some("-") {
            l = line(&mut r);
        }
        assert!(l.starts_with(code), "expected {code}, got {l:?}");
    };
    expect("220");
    for (cmd, code) in [
        ("EHLO client.a.test\r\n", "250"),
        ("MAIL FROM:<alice@a.test>\r\n", "250"),
        ("RCPT TO:<bob@b.test>\r\n", "250"),
        ("DATA\r\n", "354"),
    ] {
        w.write_all(cmd.as_bytes()).expect("command");
        expect(code);
    }
    w.write_all(format!("{MESSAGE}.\r\n").as_bytes()).expect("message");
    expect("250");
    w.write_all(b"QUIT\r\n").expect("quit");
    expect("221");
}

/// Waits for the start-up line of `smtplab tap --live`: only then can nothing be missed.
fn wait_capturing(child: &mut std::process::Child, stderr: &mut impl BufRead) -> String {
    let mut said = String::new();
    while !said.contains("capturing on lo") {
        let mut l = String::new();
        if stderr.read_line(&mut l).expect("stderr") == 0 {
            let _ = child.wait();
            panic!("smtplab tap --live stopped before capturing: {said}");
        }
        said.push_str(&l);
    }
    said
}

/// Sends Ctrl-C (SIGINT) and waits, bounded: a capture that ignores it fails the test instead of
/// hanging it.
fn interrupt(child: &mut std::process::Child) -> std::process::ExitStatus {
    let sent = Command::new("kill").args(["-s", "INT", &child.id().to_string()]).status().expect("kill");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running 30 s after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `smtplab tap --live lo` sees a plaintext exchange on loopback and prints its records while
/// the capture still runs (the session is over, the capture is not); the packets it kept with
/// `--write` give the same records when read back from the file.
#[test]
fn live_capture_on_loopback_streams_the_transaction_as_the_session_ends() {
    require_root("live capture");
    let dir = scratch("live");
    let kept = dir.join("kept.pcap");
    let listener = TcpListener::bind(("127.0.0.1", PORT)).expect("bind 127.0.0.1:18525");
    let filter = format!("tcp port {PORT}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_smtplab"))
        .args(["tap", "--live", "lo", "--filter", &filter, "--format", "jsonl", "--write"])
        .arg(&kept)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start smtplab tap --live");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut said = wait_capturing(&mut child, &mut stderr);
    // Standard output is read on its own thread, so the test can wait for lines with a bound.
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let reader = std::thread::spawn(move || {
        for l in stdout.lines().map_while(Result::ok) {
            if lines_tx.send(l).is_err() {
                break;
            }
        }
    });
    let server = std::thread::spawn(move || fake_server(listener));
    fake_client();
    server.join().expect("server thread");

    let mut records: Vec<serde_json::Value> = Vec::new();
    while !records.iter().any(|r| r["record"] == "transaction") {
        match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => records.push(serde_json::from_str(&l).expect("one JSON object per line")),
            Err(e) => {
                let _ = child.kill();
                panic!("no transaction record while the capture runs ({e}); got {records:?}");
            }
        }
    }
    let status = interrupt(&mut child);
    reader.join().expect("stdout thread");
    records.extend(lines.try_iter().map(|l| serde_json::from_str(&l).expect("JSON")));
    stderr.read_to_string(&mut said).expect("read stderr");
    assert!(status.success(), "{said}");
    assert!(said.contains("captured "), "{said}");
    let session = records.iter().find(|r| r["record"] == "session").expect("the session");
    assert_eq!(session["id.resp_p"], PORT);
    assert_eq!(session["helo"], "client.a.test");
    assert_eq!(session["server_name"], "mx.b.test");
    let tx = records.iter().find(|r| r["record"] == "transaction").expect("the transaction");
    assert_eq!(tx["mailfrom"], "alice@a.test");
    assert_eq!(tx["rcptto"], serde_json::json!(["bob@b.test"]));
    assert_eq!(tx["subject"], "live tap");
    assert_eq!(tx["sha256"], relay::sha256_hex(MESSAGE.as_bytes()), "the message recovered byte for byte");

    let from_file = smtplab(&["tap", &kept.display().to_string(), "--format", "jsonl"]);
    assert!(from_file.status.success(), "{}", text(&from_file.stderr));
    let again: Vec<serde_json::Value> =
        text(&from_file.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    assert_eq!(again, records, "the kept capture gives the records printed live");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pcap stream on standard input (`tcpdump -w - | smtplab tap -`) gives the records of the
/// same capture read from its file.
#[test]
fn a_capture_on_standard_input_gives_the_records_of_the_file() {
    let pcap = data("pcaps/zeek/smtp.pcap");
    let from_file = smtplab(&["tap", &pcap, "--format", "jsonl"]);
    assert!(from_file.status.success(), "{}", text(&from_file.stderr));
    let mut child = Command::new(env!("CARGO_BIN_EXE_smtplab"))
        .args(["tap", "-", "--format", "jsonl"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start smtplab tap -");
    let bytes = std::fs::read(&pcap).expect("pcap");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(&bytes));
    let piped = child.wait_with_output().expect("wait");
    writer.join().expect("writer").expect("write the capture to stdin");
    assert!(piped.status.success(), "{}", text(&piped.stderr));
    assert!(!from_file.stdout.is_empty());
    assert_eq!(text(&piped.stdout), text(&from_file.stdout));
}

/// Without --duration, a live capture runs until Ctrl-C (SIGINT), then finishes what it has.
#[test]
fn live_capture_stops_at_ctrl_c() {
    require_root("live capture");
    let dir = scratch("ctrlc");
    let kept = dir.join("kept.pcap");
    let mut child = Command::new(env!("CARGO_BIN_EXE_smtplab"))
        .args(["tap", "--live", "lo", "--filter", "tcp port 18526", "--write", &kept.display().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start smtplab tap --live");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut said = wait_capturing(&mut child, &mut stderr);
    let status = interrupt(&mut child);
    stderr.read_to_string(&mut said).expect("read stderr");
    assert!(status.success(), "{said}");
    assert!(said.contains("interrupted") && said.contains("captured 0 packets"), "{said}");
    assert!(kept.is_file(), "--write keeps the capture");
    let mut stdout = String::new();
    child.stdout.take().expect("stdout").read_to_string(&mut stdout).expect("stdout");
    assert!(stdout.contains("0 SMTP sessions"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn scratch(name: &str) -> PathBuf {
    common::scratch("tap-cli", name)
}

/// `--extract DIR` writes every message the eavesdropper saw whole, one `.eml` per transaction,
/// byte for byte the message whose sha256 the transaction reports; records are unchanged.
#[test]
fn extract_writes_each_whole_message_with_the_transactions_sha256() {
    let dir = scratch("extract");
    let out = dir.join("mail");
    let pcap = data("pcaps/zeek/smtp.pcap");
    let plain = smtplab(&["tap", &pcap, "--format", "jsonl"]);
    let r = smtplab(&["tap", &pcap, "--format", "jsonl", "--extract", &out.display().to_string()]);
    assert!(r.status.success(), "{}", text(&r.stderr));
    assert_eq!(text(&r.stdout), text(&plain.stdout), "extraction changes no record");
    let mut whole = 0;
    for line in text(&r.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
        if v["record"] != "transaction" {
            continue;
        }
        let file = out.join(format!("{}-{}.eml", v["uid"].as_str().expect("uid"), v["trans_depth"]));
        match v["sha256"].as_str() {
            Some(sha) => {
                let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                assert_eq!(relay::sha256_hex(&bytes), sha, "{}", file.display());
                whole += 1;
            }
            None => assert!(!file.exists(), "no file for a message not seen whole"),
        }
    }
    assert!(whole > 0, "the trace carries a whole message");
    let files = std::fs::read_dir(&out).expect("out").count();
    assert_eq!(files, whole, "one file per whole message");
    assert!(text(&r.stderr).contains(&format!("{whole} messages seen whole written to")), "{}", text(&r.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}
