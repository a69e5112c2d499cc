//! Fuzz target bodies, kept in the library so that the cargo-fuzz targets in `tap/fuzz/` (which
//! need a nightly toolchain) and the ordinary replay test (`tests/fuzz_replay.rs`, stable) run
//! the same code. Each takes arbitrary bytes and must return without panicking.

use records::TapSession;

use crate::reassembly::HalfStream;
use crate::smtp::{SessionInput, dissect_session};

/// A whole capture file: pcap or pcapng bytes through the reader, decoder, reassembly and
/// dissectors. The tap contains a panic in a flow's dissection or in a TLS handshake parser (the
/// read goes on without that flow or message), so those are turned back into panics here: each
/// is a bug the fuzzer must report.
pub fn fuzz_dissect_pcap(data: &[u8]) {
    let Ok(d) = crate::dissect::dissect_bytes("fuzz.pcap", data) else { return };
    assert_eq!(d.failed_flows, 0, "a flow's dissection panicked");
    assert!(
        !d.sessions.iter().any(|s| s.notes.iter().any(|n| n == "tls_handshake_unreadable")),
        "a TLS handshake parser panicked"
    );
}

/// One SMTP session from two byte streams, with reordering and holes made from the input.
///
/// Layout: byte 0 holds flags (bit 0: drop the server stream, a one-sided capture; bit 1: lose
/// some segments, making gaps; bits 2..8: segment size - 1); bytes 1..3 are a little-endian
/// u16 giving the client stream's length (clamped); the client's bytes follow, then the
/// server's.
pub fn fuzz_smtp_stream(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else { return };
    let Some((len, rest)) = rest.split_first_chunk::<2>() else { return };
    let split = usize::from(u16::from_le_bytes(*len)).min(rest.len());
    let (client, server) = rest.split_at(split);
    let server = if flags & 1 == 1 { &[][..] } else { server };
    let seg = usize::from(flags >> 2) + 1;
    let lossy = flags & 2 == 2;
    let c = stream(client, seg, lossy, 1000);
    let s = stream(server, seg, lossy, u32::MAX - 40);
    let (cs, ss) = crate::dissect::tunnel_prefix(&c.data, &s.data).unwrap_or((0, 0));
    let session = TapSession {
        uid: "Cfuzz".into(),
        orig_h: "192.0.2.1".into(),
        resp_h: "192.0.2.2".into(),
        ..Default::default()
    };
    let _ = dissect_session(SessionInput {
        session,
        client: &c,
        server: &s,
        client_start: cs,
        server_start: ss,
        keep_messages: false,
    });
}

/// Reassembles `bytes` sent in segments of `seg` bytes, odd segments before even ones, every
/// seventh lost when `lossy`; the sequence numbers start at `isn` (near the wrap for the server).
fn stream(bytes: &[u8], seg: usize, lossy: bool, isn: u32) -> HalfStream {
    let mut h = HalfStream::new(1 << 16, 1 << 20);
    h.syn(isn);
    let chunks: Vec<(usize, &[u8])> = bytes.chunks(seg).enumerate().collect();
    let order = chunks.iter().filter(|(i, _)| i % 2 == 1).chain(chunks.iter().filter(|(i, _)| i % 2 == 0));
    for (i, chunk) in order {
        if lossy && i % 7 == 3 {
            continue;
        }
        let seq = isn.wrapping_add(1).wrapping_add((i * seg) as u32);
        h.segment(seq, chunk, *i as f64);
    }
    h.finish();
    h
}

/// The TLS record walker on one direction's bytes.
pub fn fuzz_tls_walk(data: &[u8]) {
    let _ = crate::tls::walk(data);
}

/// Zeek-style BDAT argument parsing and the header reader, on arbitrary text.
pub fn fuzz_message(data: &[u8]) {
    let _ = proto::command::parse_bdat_argument(data);
    let mut tx = records::TapTransaction::default();
    crate::message::read_headers(data, &mut tx);
}
