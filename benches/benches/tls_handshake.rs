//! Full and resumed TLS handshakes with rustls (ring provider), in memory: a client and a server
//! `Connection` exchanging bytes through a buffer, no sockets. One iteration is everything both
//! sides do for one connection: creating the connections, the handshake, and the post-handshake
//! TLS 1.3 session tickets the server sends (the relay's server config sends them too).
//!
//! Key exchange: X25519 and secp256r1 on ring. The ring provider of rustls 0.23 has no
//! X25519MLKEM768 (the hybrid is only in aws-lc-rs), so the providers are compared in a group of
//! their own: `provider_full` and `provider_resumed`, TLS 1.3 with an ECDSA P-256 certificate, on
//! ring and on aws-lc-rs, and on aws-lc-rs with the post-quantum hybrid X25519MLKEM768.
//!
//! Ids: `tls_handshake/<full|full_verify|resumed|resumed_tickets>/<version>-<kx>-<cert>` (ring),
//! `tls_handshake/<provider_full|provider_resumed>/<provider>-TLS1.3-<kx>-ECDSA-P256`.
//! Throughput is in handshakes ("elements") per second of one core doing both sides.

use std::hint::black_box;
use std::sync::Arc;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use relay::CryptoBackend;
use rustls::crypto::SupportedKxGroup;
use rustls::crypto::ring::kx_group;
use rustls::{ClientConfig, HandshakeKind, NamedGroup, ServerConfig, SupportedProtocolVersion};
use smtplab_benches::tls::{self, Identity, KeyKind, ServerResumption, Verify};

/// The allocator the `smtplab` binary runs with (src/main.rs), so the bench measures what it runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn versions() -> [(&'static str, &'static SupportedProtocolVersion); 2] {
    [("TLS1.3", &rustls::version::TLS13), ("TLS1.2", &rustls::version::TLS12)]
}

fn kx_groups() -> [(&'static str, &'static dyn SupportedKxGroup); 2] {
    [("X25519", kx_group::X25519), ("P256", kx_group::SECP256R1)]
}

fn bench_one(
    g: &mut BenchmarkGroup<'_, WallTime>,
    function: &str,
    param: String,
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
    want: HandshakeKind,
) {
    let mut buf = Vec::with_capacity(16 << 10);
    // Warm the client's session cache (resumed benches) and check the handshake is the kind the
    // id claims, before anything is measured.
    for _ in 0..3 {
        let _ = tls::handshake(&client, &server, &mut buf);
    }
    let kind = tls::handshake(&client, &server, &mut buf).kind();
    assert_eq!(kind, Some(want), "{function}/{param} negotiated a {kind:?} handshake");
    g.bench_function(BenchmarkId::new(function, param), |b| {
        b.iter(|| black_box(tls::handshake(&client, &server, &mut buf)))
    });
}

fn handshakes(c: &mut Criterion) {
    let mut g = c.benchmark_group("tls_handshake");
    g.throughput(Throughput::Elements(1));
    let ids: Vec<(KeyKind, Identity)> = KeyKind::ALL.iter().map(|&k| (k, Identity::new(k))).collect();

    // Full handshakes, client resumption off: every certificate type on both versions and both
    // key exchange groups. The certificate is accepted without chain validation (opportunistic
    // STARTTLS); the server's handshake signature is still verified.
    for (vname, version) in versions() {
        for (kname, kx) in kx_groups() {
            for (kind, id) in &ids {
                let p = tls::provider(&[kx], None);
                let server = tls::server_config(id, &[version], p.clone(), ServerResumption::StatefulCache);
                let client = tls::client_config(&[version], p, Verify::AnyCert, false);
                let param = format!("{vname}-{kname}-{}", kind.label());
                bench_one(&mut g, "full", param, client, server, HandshakeKind::Full);
            }
        }
    }

    // The same full handshake with `verify`-mode chain validation (webpki, the bench CA).
    let (_, ecdsa) = &ids[0];
    for (vname, version) in versions() {
        let p = tls::provider(&[kx_group::X25519], None);
        let server = tls::server_config(ecdsa, &[version], p.clone(), ServerResumption::StatefulCache);
        let client = tls::client_config(&[version], p, Verify::Ca(ecdsa.ca.clone()), false);
        let param = format!("{vname}-X25519-ECDSA-P256");
        bench_one(&mut g, "full_verify", param, client, server, HandshakeKind::Full);
    }

    // Resumption. `resumed`: the server's default stateful session cache (what the relay uses:
    // TLS 1.2 session ids, TLS 1.3 tickets naming a cache entry). `resumed_tickets`: stateless
    // tickets from ring's Ticketer. TLS 1.3 resumption is psk_dhe_ke (a fresh X25519 exchange,
    // no certificate, no signature); TLS 1.2 resumption is abbreviated (no key exchange at all).
    for (mode, resumption) in
        [("resumed", ServerResumption::StatefulCache), ("resumed_tickets", ServerResumption::Tickets)]
    {
        for (vname, version) in versions() {
            let p = tls::provider(&[kx_group::X25519], None);
            let server = tls::server_config(ecdsa, &[version], p.clone(), resumption);
            let client = tls::client_config(&[version], p, Verify::AnyCert, true);
            let param = format!("{vname}-X25519-ECDSA-P256");
            bench_one(&mut g, mode, param, client, server, HandshakeKind::Resumed);
        }
    }

    // The providers side by side, as the relay builds them (`relay::CryptoBackend`).
    let cases = [
        (CryptoBackend::Ring, NamedGroup::X25519, "X25519"),
        (CryptoBackend::AwsLcRs, NamedGroup::X25519, "X25519"),
        (CryptoBackend::AwsLcRs, NamedGroup::X25519MLKEM768, "X25519MLKEM768"),
    ];
    let tls13: &[&'static SupportedProtocolVersion] = &[&rustls::version::TLS13];
    for (backend, group, gname) in cases {
        let p = tls::provider_named(backend, &[group], None);
        let param = format!("{}-TLS1.3-{gname}-ECDSA-P256", backend.name());
        let server = tls::server_config(ecdsa, tls13, p.clone(), ServerResumption::StatefulCache);
        let client = tls::client_config(tls13, p.clone(), Verify::AnyCert, false);
        bench_one(&mut g, "provider_full", param.clone(), client, server, HandshakeKind::Full);
        let server = tls::server_config(ecdsa, tls13, p.clone(), ServerResumption::StatefulCache);
        let client = tls::client_config(tls13, p, Verify::AnyCert, true);
        bench_one(&mut g, "provider_resumed", param, client, server, HandshakeKind::Resumed);
    }
    g.finish();
}

criterion_group!(benches, handshakes);
criterion_main!(benches);
