//! Certificates (rcgen), rustls configs with an explicit ring provider, and in-memory
//! connection pairs that exchange TLS bytes through a buffer instead of a socket.

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{CipherSuite, NamedGroup};
use rustls::{
    ClientConfig, ClientConnection, ConnectionCommon, HandshakeKind, RootCertStore, ServerConfig, ServerConnection,
    SupportedCipherSuite, SupportedProtocolVersion,
};

/// The fixed RSA-2048 key (see benches/data/README.md: rcgen + ring cannot generate RSA keys).
pub const RSA_2048_PEM: &str = include_str!("../data/rsa2048.key.pem");

/// The server name every bench certificate is issued for and every client asks for.
pub const SERVER_NAME: &str = "mx.bench.example";

/// Server key and certificate type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    EcdsaP256,
    Ed25519,
    Rsa2048,
}

impl KeyKind {
    pub const ALL: [KeyKind; 3] = [KeyKind::EcdsaP256, KeyKind::Ed25519, KeyKind::Rsa2048];

    pub fn label(self) -> &'static str {
        match self {
            KeyKind::EcdsaP256 => "ECDSA-P256",
            KeyKind::Ed25519 => "Ed25519",
            KeyKind::Rsa2048 => "RSA-2048",
        }
    }
}

/// A leaf certificate for [`SERVER_NAME`] issued by a throwaway ECDSA P-256 CA.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub ca: CertificateDer<'static>,
    pub chain_pem: String,
    pub key_pem: String,
}

impl Identity {
    pub fn new(kind: KeyKind) -> Identity {
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params without names are valid");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name.push(rcgen::DnType::CommonName, "smtplab bench CA");
        let ca_key = rcgen::KeyPair::generate().expect("ring generates ECDSA P-256 keys");
        let ca_cert = ca.self_signed(&ca_key).expect("self-signing the bench CA");
        let key = match kind {
            KeyKind::EcdsaP256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyKind::Ed25519 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519),
            KeyKind::Rsa2048 => rcgen::KeyPair::from_pem(RSA_2048_PEM),
        }
        .expect("bench server key (generated, or the committed RSA-2048 PKCS#8 PEM)");
        let mut leaf = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()]).expect("a DNS name is a valid SAN");
        leaf.distinguished_name.push(rcgen::DnType::CommonName, SERVER_NAME);
        let cert = leaf.signed_by(&key, &ca_cert, &ca_key).expect("the bench CA signs the leaf");
        Identity {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            ca: ca_cert.der().clone(),
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// The ring provider restricted to `kx` groups and, when given, `suites`.
pub fn provider(kx: &[&'static dyn SupportedKxGroup], suites: Option<&[SupportedCipherSuite]>) -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.kx_groups = kx.to_vec();
    if let Some(s) = suites {
        p.cipher_suites = s.to_vec();
    }
    Arc::new(p)
}

/// `backend`'s provider (as the relay builds it) restricted to the named groups and, when given,
/// suites, in the order given. Panics on a name the provider lacks: a bench set-up error.
pub fn provider_named(
    backend: relay::CryptoBackend,
    groups: &[NamedGroup],
    suites: Option<&[CipherSuite]>,
) -> Arc<CryptoProvider> {
    let all = backend.default_provider();
    let mut p = backend.default_provider();
    p.kx_groups = groups
        .iter()
        .map(|n| {
            *all.kx_groups
                .iter()
                .find(|g| g.name() == *n)
                .unwrap_or_else(|| panic!("{} has no group {n:?}", backend.name()))
        })
        .collect();
    if let Some(suites) = suites {
        p.cipher_suites = suites
            .iter()
            .map(|n| {
                *all.cipher_suites
                    .iter()
                    .find(|c| c.suite() == *n)
                    .unwrap_or_else(|| panic!("{} has no suite {n:?}", backend.name()))
            })
            .collect();
    }
    Arc::new(p)
}

/// Bytes each side sent in one full handshake (client, server), with its post-handshake
/// tickets: what the key exchange costs on the wire.
pub fn handshake_bytes(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) -> (usize, usize) {
    let mut c = ClientConnection::new(client.clone(), server_name()).expect("client connection");
    let mut s = ServerConnection::new(server.clone()).expect("server connection");
    let (mut up, mut down, mut buf) = (0, 0, Vec::new());
    loop {
        let a = transfer(&mut c, &mut s, &mut buf);
        let b = transfer(&mut s, &mut c, &mut buf);
        up += a;
        down += b;
        if a == 0 && b == 0 {
            break;
        }
    }
    assert!(!c.is_handshaking() && !s.is_handshaking(), "the handshake completed");
    (up, down)
}

/// How the server remembers sessions for resumption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerResumption {
    /// rustls' default, and what the relay uses: a stateful in-memory session cache (TLS 1.2
    /// session ids; TLS 1.3 tickets that name a cache entry).
    StatefulCache,
    /// Stateless tickets encrypted by `rustls::crypto::ring::Ticketer` (RFC 5077 / 8446 §4.6.1).
    Tickets,
}

pub fn server_config(
    id: &Identity,
    versions: &[&'static SupportedProtocolVersion],
    provider: Arc<CryptoProvider>,
    resumption: ServerResumption,
) -> Arc<ServerConfig> {
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("the provider supports the requested versions")
        .with_no_client_auth()
        .with_single_cert(id.chain.clone(), id.key.clone_key())
        .expect("the provider can sign with the bench key");
    if resumption == ServerResumption::Tickets {
        cfg.ticketer = rustls::crypto::ring::Ticketer::new().expect("ring ticketer");
    }
    Arc::new(cfg)
}

/// How the client checks the server certificate.
pub enum Verify {
    /// Opportunistic STARTTLS (`may`/`encrypt`): any certificate, handshake signature still
    /// checked. Same as `relay::tls::client_config_any_cert`.
    AnyCert,
    /// `verify`: the chain must lead to this CA and name [`SERVER_NAME`] (webpki).
    Ca(CertificateDer<'static>),
}

pub fn client_config(
    versions: &[&'static SupportedProtocolVersion],
    provider: Arc<CryptoProvider>,
    verify: Verify,
    resume: bool,
) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .expect("the provider supports the requested versions");
    let mut cfg = match verify {
        Verify::AnyCert => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth(),
        Verify::Ca(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca).expect("the bench CA is a valid trust anchor");
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    cfg.resumption = if resume { Resumption::in_memory_sessions(256) } else { Resumption::disabled() };
    Arc::new(cfg)
}

pub fn server_name() -> ServerName<'static> {
    ServerName::try_from(SERVER_NAME).expect("SERVER_NAME is a valid DNS name")
}

/// Moves every TLS byte `from` wants to send into `to`, processing it there. Returns how many
/// bytes moved. `buf` is scratch space, reused to avoid allocating per call.
pub fn transfer<A, B>(from: &mut ConnectionCommon<A>, to: &mut ConnectionCommon<B>, buf: &mut Vec<u8>) -> usize {
    buf.clear();
    while from.wants_write() {
        from.write_tls(buf).expect("writing TLS into a Vec cannot fail");
    }
    feed(to, buf);
    buf.len()
}

/// Hands `bytes` to `to` (read_tls + process_new_packets); application data it carries is read
/// out and discarded (handshakes carry none).
pub fn feed<B>(to: &mut ConnectionCommon<B>, bytes: &[u8]) {
    let mut rd = bytes;
    let mut discard = [0u8; 4096];
    while !rd.is_empty() {
        to.read_tls(&mut rd).expect("reading TLS from a slice cannot fail");
        let state = to.process_new_packets().expect("the in-memory peer sent valid TLS");
        let mut left = state.plaintext_bytes_to_read();
        while left > 0 {
            let n = to.reader().read(&mut discard).expect("plaintext reported readable");
            left -= n;
        }
    }
}

/// A fresh client/server pair driven until both are quiet: the full exchange a server does for
/// one connection, post-handshake TLS 1.3 tickets included. Returns the pair.
pub fn handshake(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>, buf: &mut Vec<u8>) -> Pair {
    let mut c = ClientConnection::new(client.clone(), server_name()).expect("client connection");
    let mut s = ServerConnection::new(server.clone()).expect("server connection");
    loop {
        let up = transfer(&mut c, &mut s, buf);
        let down = transfer(&mut s, &mut c, buf);
        if up == 0 && down == 0 {
            break;
        }
    }
    assert!(!c.is_handshaking() && !s.is_handshaking(), "in-memory handshake stalled");
    Pair { client: c, server: s }
}

pub struct Pair {
    pub client: ClientConnection,
    pub server: ServerConnection,
}

impl Pair {
    pub fn kind(&self) -> Option<HandshakeKind> {
        self.client.handshake_kind()
    }

    /// Writes `plaintext` on the client and appends the records it produces to `out` (seal).
    pub fn seal(&mut self, plaintext: &[u8], out: &mut Vec<u8>) {
        self.client.writer().write_all(plaintext).expect("no buffer limit: the writer takes everything");
        while self.client.wants_write() {
            self.client.write_tls(out).expect("writing TLS into a Vec cannot fail");
        }
    }

    /// Reads `records` on the server and drains the plaintext into `sink` (open). Returns the
    /// plaintext byte count.
    pub fn open(&mut self, records: &[u8], sink: &mut [u8]) -> usize {
        let mut got = 0;
        let mut rd = records;
        while !rd.is_empty() {
            self.server.read_tls(&mut rd).expect("reading TLS from a slice cannot fail");
            self.server.process_new_packets().expect("the client's records decrypt");
            loop {
                match self.server.reader().read(sink) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("reading plaintext: {e}"),
                }
            }
        }
        got
    }
}

/// A connected pair that negotiated exactly `suite` (TLS 1.3, X25519, ECDSA P-256 certificate),
/// with the send buffer limits lifted so one `write_all` can seal megabytes.
pub fn record_pair(id: &Identity, suite: SupportedCipherSuite) -> Pair {
    record_pair_on(id, provider(&[rustls::crypto::ring::kx_group::X25519], Some(&[suite])), suite)
}

/// [`record_pair`] on `backend`'s implementation of the suite named `suite`.
pub fn record_pair_with(id: &Identity, backend: relay::CryptoBackend, suite: CipherSuite) -> Pair {
    let p = provider_named(backend, &[NamedGroup::X25519], Some(&[suite]));
    let chosen = p.cipher_suites[0];
    record_pair_on(id, p, chosen)
}

fn record_pair_on(id: &Identity, p: Arc<CryptoProvider>, suite: SupportedCipherSuite) -> Pair {
    let versions = &[&rustls::version::TLS13];
    let server = server_config(id, versions, p.clone(), ServerResumption::StatefulCache);
    let client = client_config(versions, p, Verify::AnyCert, false);
    let mut pair = handshake(&client, &server, &mut Vec::new());
    assert_eq!(pair.client.negotiated_cipher_suite(), Some(suite), "negotiated the requested suite");
    pair.client.set_buffer_limit(None);
    pair.server.set_buffer_limit(None);
    pair
}

/// One direction's bytes of a recorded TLS conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    ClientToServer,
    ServerToClient,
}

/// Real TLS bytes of a STARTTLS session (TLS 1.3 handshake, then the SMTP dialogue as
/// application data), flight by flight: what a tap records after the `220` to STARTTLS.
pub fn recorded_starttls_session(id: &Identity, message_wire: &[u8]) -> Vec<(Dir, Vec<u8>)> {
    let p = provider(rustls::crypto::ring::ALL_KX_GROUPS, None);
    let versions = rustls::DEFAULT_VERSIONS;
    let server = server_config(id, versions, p.clone(), ServerResumption::StatefulCache);
    let client = client_config(versions, p, Verify::AnyCert, false);
    let mut c = ClientConnection::new(client, server_name()).expect("client connection");
    let mut s = ServerConnection::new(server).expect("server connection");
    c.set_buffer_limit(None);
    s.set_buffer_limit(None);
    let mut flights = Vec::new();
    let mut buf = Vec::new();
    loop {
        let up = transfer(&mut c, &mut s, &mut buf);
        if up > 0 {
            flights.push((Dir::ClientToServer, buf.clone()));
        }
        let down = transfer(&mut s, &mut c, &mut buf);
        if down > 0 {
            flights.push((Dir::ServerToClient, buf.clone()));
        }
        if up == 0 && down == 0 {
            break;
        }
    }
    let data_cmd: &[u8] = b"MAIL FROM:<alice@sender.example> BODY=8BITMIME\r\nRCPT TO:<bob@bench.example>\r\nDATA\r\n";
    let dialogue: [(&[u8], &[u8]); 4] = [
        (b"EHLO client.sender.example\r\n", b"250-mx.bench.example\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n"),
        (data_cmd, b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"),
        (message_wire, b"250 2.0.0 Ok: queued as 18F0A2B3C4D5E0001\r\n"),
        (b"QUIT\r\n", b"221 2.0.0 Bye\r\n"),
    ];
    for (up, down) in dialogue {
        c.writer().write_all(up).expect("no buffer limit");
        transfer(&mut c, &mut s, &mut buf);
        flights.push((Dir::ClientToServer, buf.clone()));
        s.writer().write_all(down).expect("no buffer limit");
        transfer(&mut s, &mut c, &mut buf);
        flights.push((Dir::ServerToClient, buf.clone()));
    }
    flights
}

/// The relay's own verifier for opportunistic STARTTLS.
pub use relay::tls::AcceptAnyCert;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_kind_handshakes_on_both_versions_and_resumes() {
        for kind in KeyKind::ALL {
            let id = Identity::new(kind);
            for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
                let p = provider(&[rustls::crypto::ring::kx_group::X25519], None);
                let server = server_config(&id, &[version], p.clone(), ServerResumption::Tickets);
                let client = client_config(&[version], p, Verify::Ca(id.ca.clone()), true);
                let mut buf = Vec::new();
                let first = handshake(&client, &server, &mut buf);
                assert_eq!(first.kind(), Some(HandshakeKind::Full), "{}", kind.label());
                let second = handshake(&client, &server, &mut buf);
                assert_eq!(second.kind(), Some(HandshakeKind::Resumed), "{} {version:?}", kind.label());
            }
        }
    }

    /// The hybrid's cost on the wire, from the sizes FIPS 203 fixes for ML-KEM-768: the client's
    /// key share grows by the 1,184-byte encapsulation key, the server's by the 1,088-byte
    /// ciphertext (each beside the same 32-byte X25519 share).
    #[test]
    fn the_hybrid_group_costs_an_ml_kem_key_and_ciphertext_on_the_wire() {
        let id = Identity::new(KeyKind::EcdsaP256);
        let versions = &[&rustls::version::TLS13];
        let bytes = |group| {
            let p = provider_named(relay::CryptoBackend::AwsLcRs, &[group], None);
            let server = server_config(&id, versions, p.clone(), ServerResumption::StatefulCache);
            let client = client_config(versions, p, Verify::AnyCert, false);
            handshake_bytes(&client, &server)
        };
        let (c0, s0) = bytes(NamedGroup::X25519);
        let (c1, s1) = bytes(NamedGroup::X25519MLKEM768);
        assert_eq!(c1 - c0, 1184, "client: {c0} -> {c1} bytes");
        // ECDSA signatures differ by a byte or two from one handshake to the next (DER).
        assert!((s1 as i64 - s0 as i64 - 1088).abs() <= 4, "server: {s0} -> {s1} bytes");
    }

    #[test]
    fn both_providers_seal_and_open() {
        let id = Identity::new(KeyKind::EcdsaP256);
        for backend in [relay::CryptoBackend::Ring, relay::CryptoBackend::AwsLcRs] {
            let mut pair = record_pair_with(&id, backend, CipherSuite::TLS13_AES_128_GCM_SHA256);
            let mut records = Vec::new();
            pair.seal(&[7u8; 50_000], &mut records);
            let mut sink = vec![0u8; 1 << 16];
            assert_eq!(pair.open(&records, &mut sink), 50_000, "{}", backend.name());
        }
    }

    #[test]
    fn seal_then_open() {
        let id = Identity::new(KeyKind::EcdsaP256);
        let mut pair = record_pair(&id, rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256);
        let mut records = Vec::new();
        pair.seal(&[7u8; 100_000], &mut records);
        let mut sink = vec![0u8; 1 << 16];
        assert_eq!(pair.open(&records, &mut sink), 100_000);
    }
}
