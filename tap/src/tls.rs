//! What an eavesdropper reads of a TLS stream without keys: the record layer (types, counts,
//! sizes) and the handshake messages sent in the clear: from the ClientHello the SNI and the
//! versions, cipher suites and groups offered; from the ServerHello the version and cipher
//! chosen; in TLS 1.2 and earlier, the server's certificate (subject, issuer, DNS names), which
//! TLS 1.3 encrypts. Parsing uses tls-parser and x509-parser.
//!
//! Names come from the peers, which may be hostile: a certificate's names are written in
//! OpenSSL's RFC 2253 form (what Zeek logs) with UTF-8 kept, the SNI and DNS names
//! escaped as Zeek's logs escape text ([`escape_text`]); neither lets a control character or a
//! byte that is not UTF-8 into a record.
//!
//! Handshake messages are reassembled across records (a Certificate message often spans
//! several; a record may also hold several messages), up to [`MAX_HANDSHAKE_MESSAGE`] bytes;
//! past it, parsing of that direction stops and the session is noted
//! `tls_handshake_message_too_long`. Parsing stops at the direction's ChangeCipherSpec too:
//! what follows is encrypted.

use tls_parser::{TlsExtension, TlsMessage, TlsMessageHandshake};
use x509_parser::asn1_rs::{Any, Class, Tag, ToDer};
use x509_parser::prelude::{AttributeTypeAndValue, FromDer, GeneralName, X509Certificate, X509Name};

/// The longest handshake message reassembled. TLS allows 2^24 - 1 bytes; a chain of a few
/// certificates is under 16 KiB, but whole bundles sent as chains, certificates with thousands
/// of names and hash-based post-quantum signatures (SLH-DSA: up to 49 KB each) pass 64 KiB
/// (OpenSSL's client accepts 100 KiB by default, Go's 256 KiB). A longer message is
/// not read, and the rest of the handshake with it ([`TlsSummary::handshake_too_long`]). Each
/// direction holds at most one message being reassembled, so a session holds at most twice this
/// (and two records), counted in the tap's memory budget while it waits.
pub const MAX_HANDSHAKE_MESSAGE: usize = 1 << 20;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct TlsSummary {
    pub records: u64,
    /// Bytes of application-data records (type 23), headers included: the visible volume.
    pub app_bytes: u64,
    /// Each application-data record: capture time of the packet that completed it, and its
    /// length on the wire (header included); the first [`records::MAX_TLS_APP_RECORDS`].
    pub app_records: Vec<(f64, u32)>,
    /// Application-data records past that bound: counted only.
    pub app_records_beyond: u64,
    pub alerts: u64,
    pub sni: Option<String>,
    /// From the ServerHello (supported_versions for TLS 1.3).
    pub version: Option<String>,
    pub cipher: Option<String>,
    /// Versions the ClientHello offered: its supported_versions extension, else its version
    /// field. GREASE values (RFC 8701) are left out of this list and the next two.
    pub offered_versions: Vec<String>,
    /// Cipher suites the ClientHello offered, IANA names (hex for those tls-parser lacks).
    pub offered_ciphers: Vec<String>,
    /// Groups the ClientHello offered (supported_groups), IANA names or hex.
    pub offered_groups: Vec<String>,
    /// The group the server chose: the ServerHello's key_share (TLS 1.3), or the named curve
    /// of an ECDHE ServerKeyExchange (TLS 1.2).
    pub group: Option<String>,
    /// The leaf certificate of a Certificate message sent in the clear (TLS 1.2 and earlier),
    /// its names as Zeek's x509.log writes them (RFC 2253: most specific first).
    pub cert_subject: Option<String>,
    pub cert_issuer: Option<String>,
    /// DNS names of the leaf certificate's subjectAltName.
    pub cert_san_dns: Vec<String>,
    /// Bytes at the end that do not form a whole record (cut capture), or that are not TLS.
    pub unparsed: u64,
    /// The stream did not start with a TLS record: plaintext continued after the 220.
    pub not_tls: bool,
    /// A handshake message longer than [`MAX_HANDSHAKE_MESSAGE`] came: it and the rest of this
    /// direction's handshake were not read.
    pub handshake_too_long: bool,
    /// Reading a handshake message panicked (a bug in the tap or in tls-parser or x509-parser):
    /// what it would have given is missing, the rest of the session is read.
    pub handshake_unreadable: bool,
    /// Handshake bytes waiting for the rest of their message.
    pub handshake: HandshakeBuffer,
}

impl TlsSummary {
    /// An application-data record of `len` bytes (header included), completed at `ts`.
    pub fn app_record(&mut self, ts: f64, len: usize) {
        self.app_bytes += len as u64;
        if self.app_records.len() < records::MAX_TLS_APP_RECORDS {
            // A u16 length and the header: always fits.
            self.app_records.push((ts, len as u32));
        } else {
            self.app_records_beyond += 1;
        }
    }

    /// Memory held for the records kept.
    pub fn held_bytes(&self) -> usize {
        self.app_records.capacity() * std::mem::size_of::<(f64, u32)>() + self.handshake.held_bytes()
    }
}

/// Reassembly of handshake messages across records, for one direction.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HandshakeBuffer {
    /// The start of a message whose end is in a later record.
    pending: Vec<u8>,
    /// No more clear handshake: after ChangeCipherSpec, or after an oversized message.
    done: bool,
}

impl HandshakeBuffer {
    /// ChangeCipherSpec: what follows in this direction is encrypted.
    pub fn end(&mut self) {
        self.done = true;
    }

    /// Memory held for a message being reassembled.
    pub fn held_bytes(&self) -> usize {
        self.pending.capacity()
    }

    /// Reads nothing more and lets go of what is held (the stream will not be fed again).
    pub fn release(&mut self) {
        self.pending = Vec::new();
        self.done = true;
    }
}

/// Walks the records of one direction of a TLS stream, its application-data records dated 0
/// (for [`walk_timed`] with capture times).
pub fn walk(data: &[u8]) -> TlsSummary {
    walk_timed(data, |_| 0.0)
}

/// [`walk`], with `time_of(i)` the capture time of the byte at index `i` of `data`: each
/// application-data record is dated by its last byte.
pub fn walk_timed(data: &[u8], time_of: impl Fn(usize) -> f64) -> TlsSummary {
    let mut s = TlsSummary::default();
    let mut pos = 0usize;
    while let Some(&[ctype, major, _, len_hi, len_lo]) = data.get(pos..).and_then(<[u8]>::first_chunk::<5>) {
        let len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
        if !(20..=24).contains(&ctype) || major != 3 {
            s.not_tls = s.records == 0;
            break;
        }
        let end = pos + 5 + len;
        // A record cut by the end of the data: left unparsed, as below.
        let Some(record) = data.get(pos..end) else { break };
        s.records += 1;
        match ctype {
            20 => s.handshake.end(),
            21 => s.alerts += 1,
            22 => read_handshake(record, &mut s),
            23 => s.app_record(time_of(end - 1), 5 + len),
            _ => {}
        }
        pos = end;
    }
    s.unparsed = (data.len() - pos) as u64;
    s
}

/// Puts what the client's and the server's directions showed into the session record.
pub fn fill_session(client: TlsSummary, server: TlsSummary, session: &mut records::TapSession) {
    session.tls_records_orig = client.records;
    session.tls_records_resp = server.records;
    session.tls_app_bytes_orig = client.app_bytes;
    session.tls_app_bytes_resp = server.app_bytes;
    session.sni = client.sni;
    session.tls_offered_versions = client.offered_versions;
    session.tls_offered_ciphers = client.offered_ciphers;
    session.tls_offered_groups = client.offered_groups;
    session.tls_group = server.group;
    session.tls_version = server.version;
    session.tls_cipher = server.cipher;
    session.cert_subject = server.cert_subject;
    session.cert_issuer = server.cert_issuer;
    session.cert_san_dns = server.cert_san_dns;
    session.tls_app_records = crate::estimate::merge(&client.app_records, &server.app_records);
    session.tls_app_records_beyond = client.app_records_beyond + server.app_records_beyond;
    let est = crate::estimate::messages(
        &session.tls_app_records,
        session.tls_version.as_deref(),
        session.tls_cipher.as_deref(),
    );
    session.est_messages = est.as_ref().map(|e| e.len() as u64);
    session.est_message_bytes = est.unwrap_or_default();
    if client.handshake_too_long || server.handshake_too_long {
        session.notes.push("tls_handshake_message_too_long".into());
    }
    if client.handshake_unreadable || server.handshake_unreadable {
        session.notes.push("tls_handshake_unreadable".into());
    }
}

/// Reads one handshake record (header included): completes the messages it finishes, keeps
/// the start of one it does not.
pub fn read_handshake(record: &[u8], s: &mut TlsSummary) {
    if s.handshake.done {
        return;
    }
    let body = record.get(5..).unwrap_or(&[]);
    if s.handshake.pending.is_empty() {
        // Whole messages straight from the record, no copy; only a cut one is kept.
        let used = read_messages(body, s);
        s.handshake.pending.extend_from_slice(body.get(used..).unwrap_or_default());
    } else {
        let mut buf = std::mem::take(&mut s.handshake.pending);
        let want = buf.len() + body.len();
        if want > buf.capacity() {
            // Double as usual, but not past the end of the message being reassembled: a 1 MiB
            // certificate chain holds 1 MiB, not 2.
            let end = buf.first_chunk::<4>().map_or(0, |&[_, a, b, c]| 4 + u32::from_be_bytes([0, a, b, c]) as usize);
            let grown = (buf.capacity() * 2).min(end).max(want);
            buf.reserve_exact(grown - buf.len());
        }
        buf.extend_from_slice(body);
        let used = read_messages(&buf, s);
        buf.drain(..used);
        s.handshake.pending = buf;
    }
    if s.handshake.done {
        s.handshake.pending = Vec::new();
    } else if s.handshake.pending.is_empty() && s.handshake.pending.capacity() > 64 << 10 {
        // A long message passed: do not hold its buffer for the session's life.
        s.handshake.pending = Vec::new();
    }
}

/// Reads the whole messages at the start of `data`; returns the bytes they took.
fn read_messages(data: &[u8], s: &mut TlsSummary) -> usize {
    let mut pos = 0;
    while let Some(&[_, a, b, c]) = data.get(pos..).and_then(<[u8]>::first_chunk::<4>) {
        let len = u32::from_be_bytes([0, a, b, c]) as usize;
        if len > MAX_HANDSHAKE_MESSAGE {
            s.handshake.done = true;
            s.handshake_too_long = true;
            return data.len();
        }
        let Some(msg) = data.get(pos..pos + 4 + len) else { break };
        read_message(msg, s);
        pos += 4 + len;
    }
    pos
}

/// Reads one handshake message. Hostile certificates and handshakes are parsed here, on the
/// reading thread for STARTTLS sessions read as they arrive: a panic in a parser costs this
/// message (noted), not the read.
fn read_message(msg: &[u8], s: &mut TlsSummary) {
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_message_unguarded(msg, s)));
    if read.is_err() {
        s.handshake_unreadable = true;
    }
}

fn read_message_unguarded(msg: &[u8], s: &mut TlsSummary) {
    let Ok((_, TlsMessage::Handshake(hs))) = tls_parser::parse_tls_message_handshake(msg) else { return };
    match hs {
        TlsMessageHandshake::ClientHello(ch) => {
            if !s.offered_ciphers.is_empty() {
                // A second ClientHello (after a HelloRetryRequest) offers the same.
                return;
            }
            s.offered_ciphers = ch.ciphers.iter().filter(|c| !is_grease(c.0)).map(|c| cipher_name(c.0)).collect();
            let mut versions = Vec::new();
            if let Some(ext) = ch.ext
                && let Ok((_, exts)) = tls_parser::parse_tls_client_hello_extensions(ext)
            {
                for e in exts {
                    match e {
                        TlsExtension::SNI(names) => {
                            s.sni = names.first().map(|(_, n)| escape_text(n));
                        }
                        TlsExtension::SupportedVersions(v) => {
                            versions = v.iter().filter(|v| !is_grease(v.0)).map(|v| version_name(v.0)).collect();
                        }
                        TlsExtension::EllipticCurves(groups) => {
                            s.offered_groups =
                                groups.iter().filter(|g| !is_grease(g.0)).map(|g| group_name(g.0)).collect();
                        }
                        _ => {}
                    }
                }
            }
            if versions.is_empty() {
                versions.push(version_name(ch.version.0));
            }
            s.offered_versions = versions;
        }
        TlsMessageHandshake::ServerHello(sh) => {
            s.cipher = Some(cipher_name(sh.cipher.0));
            let mut version = sh.version.0;
            if let Some(ext) = sh.ext
                && let Ok((_, exts)) = tls_parser::parse_tls_server_hello_extensions(ext)
            {
                for e in exts {
                    match e {
                        TlsExtension::SupportedVersions(v) => {
                            if let Some(v) = v.first() {
                                version = v.0;
                            }
                        }
                        // KeyShareEntry: group (2 bytes), then the key; a HelloRetryRequest
                        // names the group alone.
                        TlsExtension::KeyShare(&[hi, lo, ..]) => {
                            s.group = Some(group_name(u16::from_be_bytes([hi, lo])));
                        }
                        _ => {}
                    }
                }
            }
            s.version = Some(version_name(version));
        }
        // ECParameters (RFC 8422 §5.4): curve_type 3 = named_curve, then the curve.
        TlsMessageHandshake::ServerKeyExchange(ske) => {
            if let [3, hi, lo, ..] = *ske.parameters {
                s.group = Some(group_name(u16::from_be_bytes([hi, lo])));
            }
        }
        TlsMessageHandshake::Certificate(c) => {
            if s.cert_subject.is_some() {
                return;
            }
            let Some(leaf) = c.cert_chain.first() else { return };
            let Ok((_, cert)) = X509Certificate::from_der(leaf.data) else { return };
            s.cert_subject = Some(rfc2253(cert.subject()));
            s.cert_issuer = Some(rfc2253(cert.issuer()));
            if let Ok(Some(san)) = cert.subject_alternative_name() {
                s.cert_san_dns = san
                    .value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::DNSName(d) => Some(escape_text(d.as_bytes())),
                        _ => None,
                    })
                    .collect();
            }
        }
        _ => {}
    }
}

/// RFC 8701 reserves 0x?A?A values (both bytes alike) to keep peers tolerant: no meaning.
fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

fn cipher_name(id: u16) -> String {
    tls_parser::TlsCipherSuite::from_id(id).map(|c| c.name.to_string()).unwrap_or_else(|| format!("0x{id:04x}"))
}

/// IANA TLS Supported Groups names of the groups met in practice; hex for the others.
fn group_name(id: u16) -> String {
    let name = match id {
        0x0017 => "secp256r1",
        0x0018 => "secp384r1",
        0x0019 => "secp521r1",
        0x001a => "brainpoolP256r1",
        0x001b => "brainpoolP384r1",
        0x001c => "brainpoolP512r1",
        0x001d => "x25519",
        0x001e => "x448",
        0x001f => "brainpoolP256r1tls13",
        0x0020 => "brainpoolP384r1tls13",
        0x0021 => "brainpoolP512r1tls13",
        0x0100 => "ffdhe2048",
        0x0101 => "ffdhe3072",
        0x0102 => "ffdhe4096",
        0x0103 => "ffdhe6144",
        0x0104 => "ffdhe8192",
        0x11eb => "SecP256r1MLKEM768",
        0x11ec => "X25519MLKEM768",
        0x11ed => "SecP384r1MLKEM1024",
        0x6399 => "X25519Kyber768Draft00",
        _ => return format!("0x{id:04x}"),
    };
    name.to_string()
}

/// A distinguished name as OpenSSL's RFC 2253 printing (`openssl x509 -nameopt RFC2253`,
/// `XN_FLAG_RFC2253`) writes it, which is what Zeek's x509.log holds, with one difference:
/// characters beyond ASCII are kept (UTF-8) where OpenSSL writes each of their bytes as `\XX`.
/// [`openssl_rfc2253`] gives OpenSSL's form back, byte for byte.
///
/// As OpenSSL: the last RDN first, `,` between RDNs and `+` inside one; attribute types by
/// OpenSSL's short names ([`attribute_name`]), other types as their dotted OID with the value
/// as `#` and its DER in hex; values decoded as OpenSSL decodes them (UTF8String as UTF-8,
/// BMPString as UTF-16, UniversalString as UTF-32, the one-byte string types as Latin-1), then
/// escaped as RFC 4514 says and OpenSSL does: `\` before `,+"\<>;`, before a leading `#` or
/// space and before a trailing space; each byte of a control character (C0, DEL, and C1 such as
/// U+009B, a terminal's CSI) as `\XX`, and so each byte that does not decode (invalid UTF-8 in
/// a UTF8String, where OpenSSL gives up on the certificate). A backslash of the value is always
/// `\\`, so every other `\` starts an escape: the string is unambiguous, shows no control
/// character to a terminal, and any RFC 4514 parser reads it back.
fn rfc2253(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> =
        name.iter_rdn().map(|rdn| rdn.iter().map(attribute).collect::<Vec<_>>().join("+")).collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// `type=value` of one attribute of a name.
fn attribute(atv: &AttributeTypeAndValue<'_>) -> String {
    let oid = atv.attr_type().to_id_string();
    let value = atv.attr_value();
    match (attribute_name(&oid), decode_value(value)) {
        (Some(name), Some(units)) => format!("{name}={}", escape_dn_value(&units)),
        (name, _) => {
            // OpenSSL's dump (`ASN1_STRFLGS_DUMP_DER`): the value's whole DER, tag and length too.
            let der = value.to_der_vec().unwrap_or_else(|_| value.data.to_vec());
            format!("{}=#{}", name.unwrap_or(&oid), hex::encode_upper(der))
        }
    }
}

/// OpenSSL's short names of the attribute types met in distinguished names (checked against
/// `openssl x509 -nameopt RFC2253`, OpenSSL 3.0). A type not listed is written as its dotted
/// OID with its value dumped in hex, as OpenSSL writes the types it does not know.
fn attribute_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.13" => "description",
        "2.5.4.15" => "businessCategory",
        "2.5.4.16" => "postalAddress",
        "2.5.4.17" => "postalCode",
        "2.5.4.18" => "postOfficeBox",
        "2.5.4.19" => "physicalDeliveryOfficeName",
        "2.5.4.20" => "telephoneNumber",
        "2.5.4.41" => "name",
        "2.5.4.42" => "GN",
        "2.5.4.43" => "initials",
        "2.5.4.44" => "generationQualifier",
        "2.5.4.45" => "x500UniqueIdentifier",
        "2.5.4.46" => "dnQualifier",
        "2.5.4.65" => "pseudonym",
        "2.5.4.72" => "role",
        "2.5.4.97" => "organizationIdentifier",
        "1.2.840.113549.1.9.1" => "emailAddress",
        "1.2.840.113549.1.9.2" => "unstructuredName",
        "1.2.840.113549.1.9.8" => "unstructuredAddress",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.3" => "mail",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.3.6.1.4.1.311.60.2.1.1" => "jurisdictionL",
        "1.3.6.1.4.1.311.60.2.1.2" => "jurisdictionST",
        "1.3.6.1.4.1.311.60.2.1.3" => "jurisdictionC",
        _ => return None,
    })
}

/// A character of a decoded value, or a byte that did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Char(char),
    Byte(u8),
}

/// The characters of a string value, decoded by its type as OpenSSL decodes it; `None` for a
/// value that is not a string (OpenSSL dumps it in hex).
fn decode_value(value: &Any<'_>) -> Option<Vec<Unit>> {
    if value.class() != Class::Universal || value.header.is_constructed() {
        return None;
    }
    let d = value.data;
    Some(match value.tag() {
        Tag::Utf8String => {
            let mut out = Vec::with_capacity(d.len());
            for chunk in d.utf8_chunks() {
                out.extend(chunk.valid().chars().map(Unit::Char));
                out.extend(chunk.invalid().iter().map(|&b| Unit::Byte(b)));
            }
            out
        }
        // One byte a character: Latin-1 (ASCII, for the types whose alphabet is).
        Tag::NumericString | Tag::PrintableString | Tag::TeletexString | Tag::Ia5String | Tag::VisibleString => {
            d.iter().map(|&b| Unit::Char(char::from(b))).collect()
        }
        Tag::BmpString => {
            let (pairs, odd) = d.as_chunks::<2>();
            let units = pairs.iter().map(|&p| u16::from_be_bytes(p));
            let mut out: Vec<Unit> = char::decode_utf16(units)
                .flat_map(|c| match c {
                    Ok(c) => vec![Unit::Char(c)],
                    Err(e) => e.unpaired_surrogate().to_be_bytes().map(Unit::Byte).to_vec(),
                })
                .collect();
            out.extend(odd.iter().map(|&b| Unit::Byte(b)));
            out
        }
        Tag::UniversalString => {
            let (quads, rest) = d.as_chunks::<4>();
            let mut out: Vec<Unit> = quads
                .iter()
                .flat_map(|&p| match char::from_u32(u32::from_be_bytes(p)) {
                    Some(c) => vec![Unit::Char(c)],
                    None => p.iter().map(|&b| Unit::Byte(b)).collect(),
                })
                .collect();
            out.extend(rest.iter().map(|&b| Unit::Byte(b)));
            out
        }
        _ => return None,
    })
}

fn escape_dn_value(units: &[Unit]) -> String {
    let mut out = String::with_capacity(units.len());
    let last = units.len().saturating_sub(1);
    for (i, unit) in units.iter().enumerate() {
        match *unit {
            Unit::Byte(b) => push_hexpair(&mut out, b),
            Unit::Char(c) if c.is_control() => {
                for &b in c.encode_utf8(&mut [0; 4]).as_bytes() {
                    push_hexpair(&mut out, b);
                }
            }
            Unit::Char(c) => {
                let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
                    || (i == 0 && matches!(c, '#' | ' '))
                    || (i == last && c == ' ');
                if special {
                    out.push('\\');
                }
                out.push(c);
            }
        }
    }
    out
}

fn push_hexpair(out: &mut String, b: u8) {
    use std::fmt::Write;
    let _ = write!(out, "\\{b:02X}");
}

/// A distinguished name of a record (`cert_subject`, `cert_issuer`) in OpenSSL's RFC 2253 form,
/// which Zeek's x509.log holds: each byte of every character beyond ASCII written `\XX`. (Zeek's
/// log writer then writes each `\` of it as `\x5c`.)
pub fn openssl_rfc2253(dn: &str) -> String {
    let mut out = String::with_capacity(dn.len());
    for c in dn.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            for &b in c.encode_utf8(&mut [0; 4]).as_bytes() {
                push_hexpair(&mut out, b);
            }
        }
    }
    out
}

/// A name read from the wire (the SNI, a subjectAltName DNS name) as a record keeps it: valid
/// UTF-8 as it is; each byte of a control character (C0, DEL, C1), each byte that is not
/// UTF-8, and `\` itself written `\xNN`, as Zeek's log writer writes them. A record thus
/// holds no control character, and every `\x` in it is an escape.
pub fn escape_text(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() || c == '\\' {
                for &b in c.encode_utf8(&mut [0; 4]).as_bytes() {
                    let _ = write!(out, "\\x{b:02x}");
                }
            } else {
                out.push(c);
            }
        }
        for &b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

fn version_name(v: u16) -> String {
    match v {
        0x0300 => "SSLv3".into(),
        0x0301 => "TLSv1".into(),
        0x0302 => "TLSv1.1".into(),
        0x0303 => "TLSv1.2".into(),
        0x0304 => "TLSv1.3".into(),
        other => format!("0x{other:04x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_records_and_stops_at_garbage() {
        let mut d = vec![23, 3, 3, 0, 2, 0xaa, 0xbb];
        d.extend_from_slice(&[21, 3, 3, 0, 2, 1, 0]);
        d.extend_from_slice(b"QUIT\r\n");
        let s = walk(&d);
        assert_eq!((s.records, s.app_bytes, s.alerts, s.unparsed), (2, 7, 1, 6));
        assert!(!s.not_tls);
        assert!(walk(b"250 ok\r\n").not_tls);
    }

    /// Application-data records are kept up to the bound, dated by their last byte, and
    /// counted beyond it; their bytes are all counted.
    #[test]
    fn app_records_are_dated_kept_to_the_bound_and_counted_beyond() {
        let n = records::MAX_TLS_APP_RECORDS + 7;
        let mut d = vec![22, 3, 3, 0, 1, 0];
        for _ in 0..n {
            d.extend_from_slice(&[23, 3, 3, 0, 3, 1, 2, 3]);
        }
        let s = walk_timed(&d, |i| i as f64);
        assert_eq!((s.app_records.len(), s.app_records_beyond), (records::MAX_TLS_APP_RECORDS, 7));
        assert_eq!(s.app_bytes, 8 * n as u64);
        // The first ends at byte 6 + 7, the second 8 bytes later.
        assert_eq!(&s.app_records[..2], &[(13.0, 8), (21.0, 8)]);
    }
}
