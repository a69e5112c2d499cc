//! TLS 1.3 record protection with rustls (ring provider) through a connected in-memory pair,
//! per cipher suite, at 1 KB, 16 KB and 1 MB of plaintext:
//!
//! - `seal/<suite>/<size>`: `writer().write_all(plaintext)` then `write_tls` into a buffer
//!   (the plaintext copy into rustls, record framing, AEAD encryption, the copy out).
//! - `open/<suite>/<size>`: `read_tls` + `process_new_packets` + draining `reader()` (the copy
//!   in, AEAD decryption and tag check, the plaintext copy out). Records are sequence-numbered,
//!   so each batch of records to open is sealed first, outside the timed section.
//!
//! Throughput is plaintext bytes. Ids `seal/...` and `open/...` are rustls on ring (as before);
//! `aws-lc-rs/seal/...` and `aws-lc-rs/open/...` the same on aws-lc-rs, side by side in one run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use relay::CryptoBackend;
use rustls::SupportedCipherSuite;
use rustls::crypto::ring::cipher_suite;
use smtplab_benches::size_label;
use smtplab_benches::tls::{self, Identity, KeyKind};

/// The allocator the `smtplab` binary runs with (src/main.rs), so the bench measures the relay's
/// read path as it runs: rustls allocates a plaintext buffer per record it opens.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SIZES: [usize; 3] = [1 << 10, 16 << 10, 1 << 20];

fn suites() -> [(&'static str, SupportedCipherSuite); 3] {
    [
        ("TLS_AES_128_GCM_SHA256", cipher_suite::TLS13_AES_128_GCM_SHA256),
        ("TLS_AES_256_GCM_SHA384", cipher_suite::TLS13_AES_256_GCM_SHA384),
        ("TLS_CHACHA20_POLY1305_SHA256", cipher_suite::TLS13_CHACHA20_POLY1305_SHA256),
    ]
}

fn record_protection(c: &mut Criterion) {
    let id = Identity::new(KeyKind::EcdsaP256);
    let mut g = c.benchmark_group("record_protection");
    let backends = [("", CryptoBackend::Ring), ("aws-lc-rs/", CryptoBackend::AwsLcRs)];
    for ((prefix, backend), (name, suite)) in backends.into_iter().flat_map(|b| suites().map(move |s| (b, s))) {
        for size in SIZES {
            g.throughput(Throughput::Bytes(size as u64));
            let plaintext: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();

            let mut pair = tls::record_pair_with(&id, backend, suite.suite());
            let mut records = Vec::with_capacity(size + size / 256 + 64);
            g.bench_function(BenchmarkId::new(format!("{prefix}seal/{name}"), size_label(size)), |b| {
                b.iter(|| {
                    records.clear();
                    pair.seal(black_box(&plaintext), &mut records);
                    black_box(records.len())
                })
            });

            let mut pair = tls::record_pair_with(&id, backend, suite.suite());
            let mut sink = vec![0u8; 64 << 10];
            // Seal 4 MB of records per batch so the clock is read once per batch, not per record.
            let per_batch = ((4usize << 20) / size).max(1) as u64;
            g.bench_function(BenchmarkId::new(format!("{prefix}open/{name}"), size_label(size)), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let n = left.min(per_batch);
                        records.clear();
                        for _ in 0..n {
                            pair.seal(&plaintext, &mut records);
                        }
                        let start = Instant::now();
                        let got = pair.open(black_box(&records), &mut sink);
                        total += start.elapsed();
                        assert_eq!(got, size * n as usize, "every sealed byte was opened");
                        black_box(&sink);
                        left -= n;
                    }
                    total
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, record_protection);
criterion_main!(benches);
