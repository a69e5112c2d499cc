//! One SMTP mail transaction through the real relay (`relay::Relay::start` on 127.0.0.1, an
//! ephemeral port), over loopback, plaintext vs STARTTLS, at 1 KB, 10 KB, 100 KB and 10 MB.
//!
//! Ids: `smtp_transaction/<variant>/<size>`:
//! - `plain_new`: connect, 220, EHLO, MAIL+RCPT+DATA (pipelined), body, 250, QUIT, 221.
//! - `starttls_new`: the same with EHLO, STARTTLS, a full TLS handshake (client resumption off)
//!   and EHLO again before MAIL. What the relay negotiates by default: TLS 1.3, X25519,
//!   TLS_AES_256_GCM_SHA384, ECDSA P-256 certificate (checked before measuring).
//! - `starttls_new_resumed`: the same, resuming the TLS session of an earlier connection (a
//!   client config like the relay's `relay::tls::client_config_any_cert`, with rustls' default
//!   session cache: what the relay's delivery client does on its next connection to an MX).
//! - `plain_reused`, `starttls_reused`: one transaction (MAIL..250) on a session opened (and
//!   upgraded) before timing; the client sends many transactions on that one session.
//!
//! The timed section is what the client waits for. The relay writes every message durably
//! (file fsync, envelope fsync, directory fsync) before its 250: that cost is real and is in
//! every number here. After each transaction, outside the timed section, the bench waits for
//! the relay to deliver the message to its local mailbox (another fsynced write) and deletes
//! the mailbox, so deliveries never overlap the next measured transaction.
//!
//! Client and relay share one tokio runtime with two worker threads (the machine has 2 cores).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use rustls::HandshakeKind;
use smtplab_benches::smtp::{self, BenchRelay};
use smtplab_benches::{mail, size_label, tls};
use tokio::runtime::Runtime;
use tokio_rustls::TlsConnector;

/// The allocator the `smtplab` binary runs with (src/main.rs), so the bench measures what it runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SIZES: [usize; 4] = [1 << 10, 10 << 10, 100 << 10, 10 << 20];

struct Env {
    rt: Runtime,
    relay: BenchRelay,
    /// Full handshakes: resumption disabled, otherwise like the relay's client config.
    full: TlsConnector,
    /// Like the relay's client config: rustls' default session cache (256 sessions).
    resume: TlsConnector,
}

impl Env {
    fn new() -> Env {
        let rt =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
        let relay = rt.block_on(BenchRelay::start());
        let p = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let full = tls::client_config(rustls::DEFAULT_VERSIONS, p.clone(), tls::Verify::AnyCert, false);
        let resume = tls::client_config(rustls::DEFAULT_VERSIONS, p, tls::Verify::AnyCert, true);
        let env = Env { rt, relay, full: TlsConnector::from(full), resume: TlsConnector::from(resume) };
        env.check_handshakes();
        env
    }

    /// Checks (before measuring) what each STARTTLS variant negotiates, and says it.
    fn check_handshakes(&self) {
        self.rt.block_on(async {
            for (name, connector, want) in
                [("full", &self.full, HandshakeKind::Full), ("resumed", &self.resume, HandshakeKind::Resumed)]
            {
                // The first connection with the resuming config is a full one that fills its cache.
                for _ in 0..2 {
                    let mut c = smtp::open_starttls(self.relay.addr, connector).await.expect("STARTTLS session");
                    c.quit().await.expect("QUIT");
                }
                let mut c = smtp::open_starttls(self.relay.addr, connector).await.expect("STARTTLS session");
                let conn = c.io.get_ref().1;
                let kind = conn.handshake_kind();
                eprintln!(
                    "smtp_transaction: starttls {name}: {:?} {:?} {:?} handshake={kind:?}",
                    conn.protocol_version(),
                    conn.negotiated_cipher_suite().map(|s| s.suite()),
                    conn.negotiated_key_exchange_group().map(|g| g.name()),
                );
                assert_eq!(kind, Some(want), "starttls {name} handshake kind");
                c.quit().await.expect("QUIT");
            }
        });
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    PlainNew,
    StartTlsNew,
    StartTlsNewResumed,
    PlainReused,
    StartTlsReused,
}

impl Variant {
    const ALL: [Variant; 5] = [
        Variant::PlainNew,
        Variant::StartTlsNew,
        Variant::StartTlsNewResumed,
        Variant::PlainReused,
        Variant::StartTlsReused,
    ];

    fn name(self) -> &'static str {
        match self {
            Variant::PlainNew => "plain_new",
            Variant::StartTlsNew => "starttls_new",
            Variant::StartTlsNewResumed => "starttls_new_resumed",
            Variant::PlainReused => "plain_reused",
            Variant::StartTlsReused => "starttls_reused",
        }
    }
}

/// One transaction on a new connection: connect to 221.
async fn new_connection(addr: SocketAddr, tls: Option<&TlsConnector>, size: usize, wire: &[u8]) {
    match tls {
        None => {
            let mut c = smtp::open_plain(addr).await.expect("plaintext session");
            c.transaction(size, wire).await.expect("plaintext transaction");
            c.quit().await.expect("QUIT");
        }
        Some(tls) => {
            let mut c = smtp::open_starttls(addr, tls).await.expect("STARTTLS session");
            c.transaction(size, wire).await.expect("STARTTLS transaction");
            c.quit().await.expect("QUIT");
        }
    }
}

fn run(env: &Env, v: Variant, size: usize, wire: &[u8], iters: u64) -> Duration {
    let addr = env.relay.addr;
    env.rt.block_on(async {
        let mut total = Duration::ZERO;
        match v {
            Variant::PlainNew | Variant::StartTlsNew | Variant::StartTlsNewResumed => {
                let tls = match v {
                    Variant::StartTlsNew => Some(&env.full),
                    Variant::StartTlsNewResumed => Some(&env.resume),
                    _ => None,
                };
                for _ in 0..iters {
                    let start = Instant::now();
                    new_connection(addr, tls, size, wire).await;
                    total += start.elapsed();
                    env.relay.drain().await;
                }
            }
            Variant::PlainReused => {
                let mut c = smtp::open_plain(addr).await.expect("plaintext session");
                for _ in 0..iters {
                    let start = Instant::now();
                    c.transaction(size, wire).await.expect("plaintext transaction");
                    total += start.elapsed();
                    env.relay.drain().await;
                }
                c.quit().await.expect("QUIT");
            }
            Variant::StartTlsReused => {
                let mut c = smtp::open_starttls(addr, &env.full).await.expect("STARTTLS session");
                for _ in 0..iters {
                    let start = Instant::now();
                    c.transaction(size, wire).await.expect("STARTTLS transaction");
                    total += start.elapsed();
                    env.relay.drain().await;
                }
                c.quit().await.expect("QUIT");
            }
        }
        total
    })
}

fn smtp_transaction(c: &mut Criterion) {
    let mut env = Env::new();
    for size in SIZES {
        // One group per size: 10 MB transactions take tens of milliseconds, so that group uses
        // criterion's minimum of 10 samples with flat sampling.
        let mut g = c.benchmark_group("smtp_transaction");
        g.throughput(Throughput::Bytes(size as u64));
        if size >= 1 << 20 {
            g.sample_size(10);
            g.sampling_mode(SamplingMode::Flat);
        }
        let wire = proto::dot_stuff(&mail::message(size, size as u64));
        for v in Variant::ALL {
            g.bench_function(BenchmarkId::new(v.name(), size_label(size)), |b| {
                b.iter_custom(|iters| run(&env, v, size, &wire, iters))
            });
        }
        g.finish();
    }
    env.rt.block_on(env.relay.shutdown());
}

criterion_group!(benches, smtp_transaction);
criterion_main!(benches);
