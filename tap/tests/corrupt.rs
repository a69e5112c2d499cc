//! Corrupt and truncated captures: the read ends with `TapError::Corrupt` naming the byte offset
//! of the bad record or block and what is wrong with it, and the records found before it are
//! kept. Classic pcap and pcapng.

use std::path::{Path, PathBuf};

use tap::pcapfile::{CorruptKind, NotCapture};

fn zeek(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/pcaps/zeek").join(name)
}

/// Offsets of the records of a little-endian classic pcap.
fn classic_records(b: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= b.len() {
        out.push(at);
        let caplen = u32::from_le_bytes(b[at + 8..at + 12].try_into().expect("4 bytes")) as usize;
        at += 16 + caplen;
    }
    out
}

/// Offsets of the blocks of a little-endian pcapng.
fn ng_blocks(b: &[u8]) -> Vec<(usize, u32)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 12 <= b.len() {
        let btype = u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
        let len = u32::from_le_bytes(b[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        out.push((at, btype));
        at += len;
    }
    out
}

/// The offset, the defect, and the whole message of the error that ended the read.
fn corrupt_at(d: &tap::Dissection) -> (u64, CorruptKind, String) {
    match &d.error {
        Some(e @ tap::TapError::Corrupt { offset, kind, .. }) => (*offset, kind.clone(), e.to_string()),
        other => panic!("expected a corrupt-capture error, got {other:?}"),
    }
}

#[test]
fn classic_record_with_a_bad_length_names_its_offset() {
    let mut b = std::fs::read(zeek("smtp.pcap")).expect("trace");
    assert_eq!(&b[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "little-endian classic pcap");
    let records = classic_records(&b);
    // Record 100 of 125: the first session (packets 1..~90) is complete before it.
    let at = records[100];
    b[at + 8..at + 12].copy_from_slice(&0x4000_0000u32.to_le_bytes());
    let d = tap::dissect_bytes("bad.pcap", &b).expect("still a capture");
    let (offset, kind, detail) = corrupt_at(&d);
    assert_eq!(offset, at as u64);
    // The trace's snapshot length, 262144, is the limit.
    assert_eq!(kind, CorruptKind::RecordTooLong { caplen: 0x4000_0000, limit: 262_144, snaplen: 262_144 });
    assert!(detail.contains("1073741824"), "{detail}");
    assert_eq!(d.packets, 100, "every record before the bad one was read");
    assert!(d.transactions.iter().any(|t| t.helo.as_deref() == Some("GP")), "first session's transaction kept");
    let msg = d.error.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(msg.contains(&format!("byte offset {at}")) && msg.contains("records before it were kept"), "{msg}");
}

#[test]
fn classic_truncated_inside_a_record_and_inside_a_header() {
    let b = std::fs::read(zeek("smtp.pcap")).expect("trace");
    let records = classic_records(&b);
    let last = *records.last().expect("records");
    // Cut 5 bytes into the last record's data, then 5 bytes into its header.
    let caplen = u32::from_le_bytes(b[last + 8..last + 12].try_into().expect("4 bytes"));
    for (cut, what, want) in [
        (last + 16 + 5, "record cut short (5 of", CorruptKind::RecordCut { got: 5, caplen }),
        (last + 5, "record header cut short (5 of 16 bytes)", CorruptKind::RecordHeaderCut { got: 5 }),
    ] {
        let d = tap::dissect_bytes("cut.pcap", &b[..cut]).expect("capture");
        let (offset, kind, detail) = corrupt_at(&d);
        assert_eq!(offset, last as u64);
        assert_eq!(kind, want);
        assert!(detail.contains(what), "{detail}");
        assert!(
            detail.starts_with(&format!("cut.pcap: corrupt or truncated capture at byte offset {last} (")),
            "{detail}"
        );
        assert_eq!(d.packets, records.len() as u64 - 1);
        // The trace's other TCP flows (HTTPS, XMPP, ...) have their bare records, noted.
        let smtp = d.sessions.iter().filter(|s| !s.notes.iter().any(|n| n == "not_smtp")).count();
        assert_eq!(smtp, 2, "both SMTP sessions kept");
    }
    // A cut exactly at a record boundary is a clean (shorter) capture.
    let d = tap::dissect_bytes("short.pcap", &b[..last]).expect("capture");
    assert!(d.error.is_none());
}

#[test]
fn pcapng_block_with_a_bad_length_names_its_offset() {
    let path = zeek("smtp__smtp-bdat-cmd-invalid.pcapng");
    let b = std::fs::read(&path).expect("trace");
    let blocks = ng_blocks(&b);
    assert_eq!(blocks[0].1, 0x0A0D_0D0A, "starts with a section header");
    assert_eq!(&b[8..12], &[0x4d, 0x3c, 0x2b, 0x1a], "little-endian section");
    let whole = tap::dissect_bytes("ok.pcapng", &b).expect("capture");
    assert!(whole.error.is_none());
    assert_eq!(whole.sessions.len(), 3);
    // The 40th packet block: after the first session (22 packets) and inside the second.
    let packets: Vec<usize> = blocks.iter().filter(|(_, t)| *t == 6).map(|(at, _)| *at).collect();
    let at = packets[39];
    for (bad_len, why) in [(13u32, "not valid"), (1 << 30, "not valid"), (64, "differ")] {
        let mut bad = b.clone();
        bad[at + 4..at + 8].copy_from_slice(&bad_len.to_le_bytes());
        let d = tap::dissect_bytes("bad.pcapng", &bad).expect("still a capture");
        let (offset, kind, detail) = corrupt_at(&d);
        match kind {
            CorruptKind::BlockLength { total } => assert!(bad_len != 64 && total == bad_len, "{kind:?}"),
            CorruptKind::BlockLengthsDiffer { start, .. } => assert!(bad_len == 64 && start == 64, "{kind:?}"),
            other => panic!("length {bad_len}: {other:?}"),
        }
        assert_eq!(offset, at as u64, "length {bad_len}");
        assert!(detail.contains(why), "{detail}");
        assert_eq!(d.packets, 39);
        assert!(!d.sessions.is_empty() && d.sessions.len() <= 2, "sessions before the bad block kept");
        assert_eq!(d.sessions[0], whole.sessions[0], "the first session is whole");
    }
    // Truncated in the middle of the last block.
    let (last, _) = *blocks.last().expect("blocks");
    let d = tap::dissect_bytes("cut.pcapng", &b[..last + 10]).expect("capture");
    let (offset, kind, _) = corrupt_at(&d);
    assert_eq!(offset, last as u64);
    assert!(matches!(kind, CorruptKind::BlockCut { got: 10, .. }), "{kind:?}");
    assert_eq!(d.sessions.len(), 3);
}

#[test]
fn pcapng_packet_naming_an_unknown_interface_is_corrupt() {
    let mut b = std::fs::read(zeek("smtp__smtp-bdat-cmd-invalid.pcapng")).expect("trace");
    let at = ng_blocks(&b).iter().find(|(_, t)| *t == 6).map(|(at, _)| *at).expect("a packet block");
    b[at + 8..at + 12].copy_from_slice(&7u32.to_le_bytes());
    let d = tap::dissect_bytes("bad.pcapng", &b).expect("capture");
    let (offset, kind, detail) = corrupt_at(&d);
    assert_eq!(offset, at as u64);
    assert_eq!(kind, CorruptKind::UnknownInterface { iface: 7 });
    assert!(detail.contains("interface 7"), "{detail}");
}

#[test]
fn not_a_capture_is_an_error_before_any_record() {
    match tap::dissect_bytes("notes.txt", b"this is not a capture file at all") {
        Err(e @ tap::TapError::NotCapture { source: NotCapture::Magic { magic: [b't', b'h', b'i', b's'] }, .. }) => {
            assert_eq!(e.to_string(), "notes.txt: not a pcap or pcapng file (unknown magic 74686973)");
        }
        other => panic!("{other:?}"),
    }
    match tap::dissect_file(Path::new("/nonexistent/capture.pcap")) {
        Err(tap::TapError::Open { path, source }) => {
            assert_eq!(path, "/nonexistent/capture.pcap");
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("{other:?}"),
    }
    let dir = std::env::temp_dir();
    match tap::dissect_file(&dir) {
        Err(e @ tap::TapError::Directory { .. }) => {
            assert_eq!(e.to_string(), format!("{}: is a directory; give a pcap or pcapng file", dir.display()));
        }
        other => panic!("{other:?}"),
    }
}
