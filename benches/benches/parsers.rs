//! Parsing throughput, in bytes per second:
//!
//! - `parsers/command_parse`: `proto::Command::parse` over a realistic mix of command lines
//!   (a client's session, a few oddities the tap meets: no brackets, BDAT, AUTH, junk).
//! - `parsers/line_buffer+command_parse`: the same lines as wire bytes, split by
//!   `proto::LineBuffer` in 4 KB reads, then parsed (what the relay and the tap do).
//! - `parsers/data_receiver/1MB`: `proto::DataReceiver` over a dot-stuffed 1 MB body in 16 KB
//!   reads (the relay's read size).
//! - `parsers/reply_parser`: `proto::ReplyParser` over a server's reply stream in 4 KB reads.
//! - `tap_dissect/{plaintext,starttls}`: `tap::dissect_file` on captures generated once per run
//!   into a temp dir (classic pcap, Ethernet/IPv4/TCP frames built with etherparse, MSS 1448):
//!   (a) plaintext SMTP sessions with DATA, (b) STARTTLS sessions whose bytes after the 220 are
//!   real TLS 1.3 records. Throughput is the capture file's size.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use proto::{Command, DataReceiver, DataStatus, Line, LineBuffer, ReplyParser};
use smtplab_benches::{mail, pcap, test_mode};

/// The allocator the `smtplab` binary runs with (src/main.rs), so the bench measures what it runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const COMMANDS: &[&[u8]] = &[
    b"EHLO mail-yw1-f170.google.com",
    b"STARTTLS",
    b"EHLO mail-yw1-f170.google.com",
    b"MAIL FROM:<alice.smith+newsletter@sender.example> SIZE=48213 BODY=8BITMIME",
    b"RCPT TO:<bob@bench.example>",
    b"RCPT TO:<carol.jones@bench.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;carol.jones@bench.example",
    b"RCPT TO:<dave@bench.example>",
    b"DATA",
    b"RSET",
    b"MAIL FROM:<> SIZE=2210",
    b"RCPT TO:<postmaster@bench.example>",
    b"BDAT 2210 LAST",
    b"NOOP",
    b"HELO legacy.example",
    b"MAIL FROM:sender@localhost",
    b"AUTH PLAIN AGFsaWNlAHNlY3JldA==",
    b"VRFY postmaster",
    b"XCLIENT NAME=spike.porcupine.org ADDR=168.100.189.2",
    b"GET / HTTP/1.1",
    b"QUIT",
];

/// A server's side of a few sessions: greeting, multi-line EHLO, the transaction's replies.
fn reply_stream() -> Vec<u8> {
    let session: &[u8] = b"220 mx.bench.example ESMTP smtplab\r\n\
        250-mx.bench.example\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-8BITMIME\r\n\
        250-ENHANCEDSTATUSCODES\r\n250 STARTTLS\r\n\
        250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n\
        250 2.0.0 Ok: queued as 18F0A2B3C4D5E0001\r\n\
        550 5.1.1 <nobody@bench.example>: Recipient address rejected: User unknown\r\n\
        221 2.0.0 Bye\r\n";
    session.repeat((64 << 10) / session.len())
}

fn parsers(c: &mut Criterion) {
    let mut g = c.benchmark_group("parsers");

    let line_bytes: usize = COMMANDS.iter().map(|l| l.len()).sum();
    g.throughput(Throughput::Bytes(line_bytes as u64));
    g.bench_function("command_parse", |b| {
        b.iter(|| {
            for line in COMMANDS {
                black_box(Command::parse(black_box(line)));
            }
        })
    });

    let wire: Vec<u8> = COMMANDS.iter().flat_map(|l| [*l, b"\r\n"]).flatten().copied().collect();
    let wire = wire.repeat((64 << 10) / wire.len());
    g.throughput(Throughput::Bytes(wire.len() as u64));
    g.bench_function("line_buffer+command_parse", |b| {
        b.iter(|| {
            let mut lines = LineBuffer::new(proto::MAX_COMMAND_LINE);
            for read in wire.chunks(4 << 10) {
                lines.extend(read);
                while let Some(line) = lines.next_line() {
                    if let Line::Complete(l) = line {
                        black_box(Command::parse(&l));
                    }
                }
            }
        })
    });

    let body = proto::dot_stuff(&mail::message(1 << 20, 1));
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function(BenchmarkId::new("data_receiver", "1MB"), |b| {
        b.iter(|| {
            let mut rx = DataReceiver::new(50 << 20);
            for read in body.chunks(16 << 10) {
                if let DataStatus::Done { .. } = rx.feed(read) {
                    break;
                }
            }
            black_box(rx.message.len())
        })
    });

    let replies = reply_stream();
    g.throughput(Throughput::Bytes(replies.len() as u64));
    g.bench_function("reply_parser", |b| {
        b.iter(|| {
            let mut p = ReplyParser::new(proto::MAX_COMMAND_LINE);
            let mut n = 0usize;
            for read in replies.chunks(4 << 10) {
                p.extend(read);
                while let Some(r) = p.next_reply() {
                    n += usize::from(r.is_ok());
                }
            }
            black_box(n)
        })
    });
    g.finish();

    // Captures: ~100 sessions (about 4 MB) each when benchmarking, 4 in test mode (CI).
    let sessions = if test_mode() { 4 } else { 100 };
    let dir = tempfile::Builder::new().prefix("smtplab-bench-pcap-").tempdir().expect("temp dir for captures");
    let mut g = c.benchmark_group("tap_dissect");
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    for (name, make) in [
        ("plaintext", pcap::plaintext_capture as fn(usize) -> Vec<u8>),
        ("starttls", pcap::starttls_capture as fn(usize) -> Vec<u8>),
    ] {
        let path = dir.path().join(format!("{name}.pcap"));
        let bytes = make(sessions);
        std::fs::write(&path, &bytes).expect("write generated capture");
        // Sanity (not timing): the dissector finds every session of the generated capture.
        let d = tap::dissect_file(&path).expect("dissect generated capture");
        assert_eq!(d.sessions.len(), sessions, "{name}: sessions found in the generated capture");
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(name, |b| b.iter(|| black_box(tap::dissect_file(&path).expect("dissect"))));
    }
    g.finish();
}

criterion_group!(benches, parsers);
criterion_main!(benches);
