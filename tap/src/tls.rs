//! What an eavesdropper reads of a TLS stream without keys: the record layer (types, counts,
//! sizes) and the handshake messages sent in the clear (SNI, versions, cipher). Parsing uses
//! tls-parser.

use tls_parser::{TlsExtension, TlsMessage, TlsMessageHandshake};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TlsSummary {
    pub records: u64,
    /// Bytes of application-data records (type 23), headers included: the visible volume.
    pub app_bytes: u64,
    pub alerts: u64,
    pub sni: Option<String>,
    /// From the ServerHello (supported_versions for TLS 1.3).
    pub version: Option<String>,
    pub cipher: Option<String>,
    /// Bytes at the end that do not form a whole record (cut capture), or that are not TLS.
    pub unparsed: u64,
    /// The stream did not start with a TLS record: plaintext continued after the 220.
    pub not_tls: bool,
}

/// Walks the records of one direction of a TLS stream.
pub fn walk(data: &[u8]) -> TlsSummary {
    let mut s = TlsSummary::default();
    let mut pos = 0usize;
    while pos + 5 <= data.len() {
        let ctype = data[pos];
        let major = data[pos + 1];
        let len = u16::from_be_bytes([data[pos + 3], data[pos + 4]]) as usize;
        if !(20..=24).contains(&ctype) || major != 3 {
            s.not_tls = s.records == 0;
            break;
        }
        let end = pos + 5 + len;
        if end > data.len() {
            break;
        }
        s.records += 1;
        match ctype {
            21 => s.alerts += 1,
            22 => read_handshake(&data[pos..end], &mut s),
            23 => s.app_bytes += (5 + len) as u64,
            _ => {}
        }
        pos = end;
    }
    s.unparsed = (data.len() - pos) as u64;
    s
}

pub(crate) fn read_handshake(record: &[u8], s: &mut TlsSummary) {
    let Ok((_, plain)) = tls_parser::parse_tls_plaintext(record) else { return };
    for msg in plain.msg {
        match msg {
            TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch)) => {
                let Some(ext) = ch.ext else { continue };
                let Ok((_, exts)) = tls_parser::parse_tls_client_hello_extensions(ext) else { continue };
                for e in exts {
                    if let TlsExtension::SNI(names) = e {
                        s.sni = names.first().map(|(_, n)| String::from_utf8_lossy(n).into_owned());
                    }
                }
            }
            TlsMessage::Handshake(TlsMessageHandshake::ServerHello(sh)) => {
                s.cipher = tls_parser::TlsCipherSuite::from_id(sh.cipher.0)
                    .map(|c| c.name.to_string())
                    .or_else(|| Some(format!("0x{:04x}", sh.cipher.0)));
                let mut version = sh.version.0;
                if let Some(ext) = sh.ext
                    && let Ok((_, exts)) = tls_parser::parse_tls_server_hello_extensions(ext)
                {
                    for e in exts {
                        if let TlsExtension::SupportedVersions(v) = e
                            && let Some(v) = v.first()
                        {
                            version = v.0;
                        }
                    }
                }
                s.version = Some(version_name(version));
            }
            _ => {}
        }
    }
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
}
