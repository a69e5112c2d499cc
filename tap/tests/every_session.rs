//! Every TCP session the tap sees yields a session record: on each real capture of the fixtures,
//! as many session records as tshark finds TCP streams, of which as many are SMTP (not noted
//! `not_smtp`/`no_payload`) as the fixtures' README finds SMTP sessions.
//!
//! The stream counts are tshark 4.0's, transcribed:
//!
//! ```text
//! tshark -r FILE -Y tcp -T fields -e tcp.stream | sort -u | wc -l
//! ```

use std::path::Path;

/// (capture under `tests/data/pcaps`, TCP streams per tshark, SMTP sessions per PROVENANCE.md).
const CAPTURES: &[(&str, usize, usize)] = &[
    ("zeek/http__connect-with-smtp.pcap", 1, 1),
    ("zeek/smtp-attachment-msg.pcap", 1, 1),
    ("zeek/smtp-mail-transactions-invalid.pcap", 1, 1),
    ("zeek/smtp-multi-addr.pcap", 1, 1),
    ("zeek/smtp-one-side-only.pcap", 1, 1),
    ("zeek/smtp.pcap", 6, 2),
    ("zeek/smtp__mime-header-size-limit.pcap", 1, 1),
    ("zeek/smtp__rfc3030-bdat-0-last.pcap", 1, 1),
    ("zeek/smtp__rfc3030-bdat-example1.pcap", 1, 1),
    ("zeek/smtp__rfc3030-bdat-multipart-chunked.pcap", 1, 1),
    ("zeek/smtp__rfc3030-bdat-multipart.pcap", 1, 1),
    ("zeek/smtp__rfc3030-bdat-nonascii.pcap", 1, 1),
    ("zeek/smtp__smtp-bdat-cmd-chunk-size-overflow.pcap", 1, 1),
    ("zeek/smtp__smtp-bdat-cmd-chunk-size-overflow2.pcap", 1, 1),
    ("zeek/smtp__smtp-bdat-cmd-invalid.pcapng", 3, 3),
    ("zeek/smtp__smtp-bdat-cmd-negative-chunk-size.pcap", 1, 1),
    ("zeek/smtp__smtp-bdat-gap.pcap", 1, 1),
    ("zeek/smtp__smtp-bdat-pipeline-8bitmime.pcap", 1, 1),
    ("zeek/smtp__smtp-many-addresses.pcap", 1, 1),
    ("zeek/tls__smtp-starttls.pcap", 1, 1),
    ("ndpi/smtp-starttls.pcap", 2, 2),
    ("ndpi/smtp.pcap", 1, 1),
    ("ndpi/smtps.pcapng", 1, 1),
];

fn not_smtp(s: &records::TapSession) -> bool {
    s.notes.iter().any(|n| n == "not_smtp" || n == "no_payload")
}

#[test]
fn every_tcp_stream_of_the_real_captures_has_a_session_record() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/pcaps");
    for (file, streams, smtp) in CAPTURES {
        let d = tap::dissect_file(&dir.join(file)).expect("dissects");
        assert!(d.error.is_none(), "{file}: {:?}", d.error);
        assert_eq!(d.sessions.len(), *streams, "{file}: {:#?}", d.sessions);
        assert_eq!(d.sessions.iter().filter(|s| !not_smtp(s)).count(), *smtp, "{file}");
        assert!(d.sessions.iter().all(|s| !s.notes.iter().any(|n| n == "dissection_failed")), "{file}");
    }
}

/// The four streams of Zeek's smtp.pcap that are not SMTP (tshark `-z conv,tcp`: XMPP-like
/// 5050 and 5223, two HTTPS), each with its endpoints and nothing read as SMTP.
#[test]
fn the_other_streams_of_zeeks_smtp_trace_are_recorded_as_not_smtp() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/pcaps/zeek/smtp.pcap");
    let d = tap::dissect_file(&path).expect("dissects");
    let mut other: Vec<(u16, u16)> = d.sessions.iter().filter(|s| not_smtp(s)).map(|s| (s.orig_p, s.resp_p)).collect();
    other.sort_unstable();
    // The client side of a stream without its SYN is the higher port's.
    assert_eq!(other, [(49153, 5223), (49285, 5050), (49336, 443), (49655, 443)]);
    for s in d.sessions.iter().filter(|s| not_smtp(s)) {
        assert!(s.helo.is_none() && !s.starttls_offered && s.transactions == 0, "{s:#?}");
        assert_eq!(s.orig_h, "192.168.133.100");
    }
    assert!(d.transactions.iter().all(|t| t.orig_p == 1470 || t.orig_p == 49648));
}
