//! The eavesdropper's system-to-system volume table: per ordered pair of endpoints, what a
//! passive tap learns with or without STARTTLS (sessions, bytes each way, transactions read in
//! the clear, and the names it can put on both ends). `smtplab tap` prints it and writes it as
//! `volume.parquet`.

use std::collections::{BTreeMap, BTreeSet};

use records::{TapSession, VolumeRow};

/// What the eavesdropper learns per ordered pair of endpoints (client address → server
/// address), with or without STARTTLS: how many sessions, how many bytes each way, how many
/// transactions it could read, and the names it can put on both ends.
#[derive(Debug, Default)]
pub struct Volume {
    pairs: BTreeMap<(String, String), Pair>,
    /// SMTP sessions and transactions in the clear, over every pair.
    pub sessions: u64,
    pub transactions: u64,
}

#[derive(Debug, Default)]
struct Pair {
    sessions: u64,
    starttls: u64,
    orig_bytes: u64,
    resp_bytes: u64,
    transactions: u64,
    /// EHLO/HELO names the client gave.
    helo: BTreeSet<String>,
    /// Names the server gave in its greeting or EHLO reply.
    server: BTreeSet<String>,
    /// TLS server names the client asked for.
    sni: BTreeSet<String>,
    /// Names in the server certificates sent in the clear (TLS 1.2): DNS names of the
    /// subjectAltName, else the subject's CN.
    cert: BTreeSet<String>,
}

/// Distinct names kept per pair and column (a hostile peer could send a new name each time).
const MAX_NAMES: usize = 8;

fn remember(set: &mut BTreeSet<String>, name: Option<&str>) {
    if let Some(n) = name.filter(|n| !n.is_empty())
        && (set.len() < MAX_NAMES || set.contains(n))
    {
        set.insert(n.to_string());
    }
}

impl Volume {
    /// Counts one session the tap recorded (sessions that carried no SMTP are left out).
    pub fn add(&mut self, s: &TapSession) {
        // The tap records every TCP session it sees; the volume is that of SMTP sessions.
        if s.notes.iter().any(|n| n == "not_smtp" || n == "no_payload") {
            return;
        }
        self.sessions += 1;
        self.transactions += s.transactions;
        let p = self.pairs.entry((s.orig_h.clone(), s.resp_h.clone())).or_default();
        p.sessions += 1;
        p.starttls += u64::from(s.starttls_used);
        p.orig_bytes += s.orig_bytes;
        p.resp_bytes += s.resp_bytes;
        p.transactions += s.transactions;
        remember(&mut p.helo, s.helo.as_deref());
        remember(&mut p.server, s.server_name.as_deref());
        remember(&mut p.sni, s.sni.as_deref());
        if s.cert_san_dns.is_empty() {
            remember(&mut p.cert, s.cert_subject.as_deref().and_then(common_name));
        }
        for name in &s.cert_san_dns {
            remember(&mut p.cert, Some(name));
        }
    }

    /// The table as rows for `volume.parquet`.
    pub fn rows(&self) -> Vec<VolumeRow> {
        let list = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>();
        self.pairs
            .iter()
            .map(|((client, server), p)| VolumeRow {
                client: client.clone(),
                server: server.clone(),
                sessions: p.sessions,
                starttls_sessions: p.starttls,
                orig_bytes: p.orig_bytes,
                resp_bytes: p.resp_bytes,
                transactions: p.transactions,
                helo_names: list(&p.helo),
                server_names: list(&p.server),
                sni: list(&p.sni),
                cert_names: list(&p.cert),
            })
            .collect()
    }

    /// The table as text for a terminal, one line per pair, columns aligned.
    pub fn render(&self) -> String {
        let header = [
            "client",
            "server",
            "sessions",
            "STARTTLS",
            "bytes c->s",
            "bytes s->c",
            "tx in clear",
            "client names (EHLO)",
            "server names (banner/EHLO)",
            "SNI",
            "certificate names",
        ];
        // EHLO and banner names are raw text from the wire; SNI and certificate names come
        // escaped from the tap already.
        let names = |set: &BTreeSet<String>, raw: bool| {
            if set.is_empty() {
                "-".to_string()
            } else {
                let mut s = set.iter().map(|n| if raw { shown(n) } else { n.clone() }).collect::<Vec<_>>().join(",");
                if set.len() >= MAX_NAMES {
                    s.push_str(",...");
                }
                s
            }
        };
        let rows: Vec<[String; 11]> = self
            .pairs
            .iter()
            .map(|((c, s), p)| {
                [
                    c.clone(),
                    s.clone(),
                    p.sessions.to_string(),
                    p.starttls.to_string(),
                    human_bytes(p.orig_bytes),
                    human_bytes(p.resp_bytes),
                    p.transactions.to_string(),
                    names(&p.helo, true),
                    names(&p.server, true),
                    names(&p.sni, false),
                    names(&p.cert, false),
                ]
            })
            .collect();
        let mut width = header.map(str::len);
        for r in &rows {
            for (w, cell) in width.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        // Numbers right-aligned, text left-aligned; the last column is not padded.
        let numeric = [false, false, true, true, true, true, true, false, false, false, false];
        let line = |cells: &[String]| {
            let mut l = String::new();
            for (i, ((cell, w), num)) in cells.iter().zip(width).zip(numeric).enumerate() {
                if i > 0 {
                    l.push_str("  ");
                }
                let pad = w.saturating_sub(cell.chars().count());
                if num {
                    l.push_str(&" ".repeat(pad));
                    l.push_str(cell);
                } else {
                    l.push_str(cell);
                    if i + 1 < cells.len() {
                        l.push_str(&" ".repeat(pad));
                    }
                }
            }
            l
        };
        let mut out = String::from(
            "System-to-system volume (per ordered pair of endpoints; visible with or without STARTTLS):\n",
        );
        out.push_str(&line(&header.map(String::from)));
        out.push('\n');
        if rows.is_empty() {
            out.push_str("(no SMTP sessions)\n");
        }
        for r in &rows {
            out.push_str(&line(r));
            out.push('\n');
        }
        out
    }
}

/// Text from the wire as the table shows it: control characters (an ESC would drive the
/// terminal) and `\` written `\xNN`, as the records write certificate names.
pub fn shown(text: &str) -> String {
    crate::tls::escape_text(text.as_bytes())
}

/// The CN of a certificate subject as the records write it (RFC 2253: `,` between attributes, a
/// `\,` inside a value), still escaped.
fn common_name(subject: &str) -> Option<&str> {
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in subject.char_indices().chain(std::iter::once((subject.len(), ','))) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                if let Some(cn) = subject.get(start..i).and_then(|a| a.strip_prefix("CN=")) {
                    return Some(cn);
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    None
}

/// Bytes as a person reads them: `999 B`, `1.5 kB`, `2.3 GB` (powers of 1000).
fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    match UNITS.get(u) {
        Some(unit) if u > 0 => format!("{v:.1} {unit}"),
        _ => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(orig: &str, resp: &str, tls: bool, helo: &str) -> TapSession {
        TapSession {
            orig_h: orig.into(),
            resp_h: resp.into(),
            helo: Some(helo.into()),
            server_name: Some(format!("mx.{resp}")),
            sni: tls.then(|| format!("mx.{resp}")),
            cert_subject: tls.then(|| format!("CN=cert.{resp},O=Example\\, Inc.,C=US")),
            starttls_used: tls,
            orig_bytes: 1500,
            resp_bytes: 300,
            transactions: u64::from(!tls),
            ..Default::default()
        }
    }

    #[test]
    fn volume_table_counts_each_ordered_pair_with_inferred_names() {
        let mut v = Volume::default();
        v.add(&session("10.0.1.1", "10.0.2.1", true, "a.example"));
        v.add(&session("10.0.1.1", "10.0.2.1", true, "a.example"));
        v.add(&session("10.0.2.1", "10.0.1.1", false, "b.example"));
        let t = v.render();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[1].starts_with("client"), "{t}");
        let ab: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            ab,
            [
                "10.0.1.1",
                "10.0.2.1",
                "2",
                "2",
                "3.0",
                "kB",
                "600",
                "B",
                "0",
                "a.example",
                "mx.10.0.2.1",
                "mx.10.0.2.1",
                "cert.10.0.2.1"
            ]
        );
        let ba: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(
            ba,
            ["10.0.2.1", "10.0.1.1", "1", "0", "1.5", "kB", "300", "B", "1", "b.example", "mx.10.0.1.1", "-", "-"]
        );
        assert_eq!((v.sessions, v.transactions), (3, 1));
    }

    #[test]
    fn certificate_names_are_the_san_dns_names_else_the_cn() {
        let mut v = Volume::default();
        let mut s = session("10.0.1.1", "10.0.2.1", true, "a.example");
        s.cert_san_dns = vec!["mx.b.example".into(), "mail.b.example".into()];
        v.add(&s);
        let p = v.pairs.values().next().expect("one pair");
        assert_eq!(p.cert.iter().map(String::as_str).collect::<Vec<_>>(), ["mail.b.example", "mx.b.example"]);
        assert_eq!(common_name("O=x,CN=y"), Some("y"));
        assert_eq!(common_name("O=x"), None);
        assert_eq!(common_name("O=a\\,CN=b,CN=mx\\,1,C=DE"), Some("mx\\,1"));
        assert_eq!(shown("mx\u{1b}[31m"), "mx\\x1b[31m");
    }

    #[test]
    fn names_per_pair_are_bounded() {
        let mut v = Volume::default();
        for i in 0..100 {
            v.add(&session("10.0.1.1", "10.0.2.1", false, &format!("h{i}")));
        }
        let p = v.pairs.values().next().expect("one pair");
        assert_eq!(p.helo.len(), MAX_NAMES);
        assert!(v.render().contains(",..."));
    }

    #[test]
    fn bytes_read_as_a_person_would() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1500), "1.5 kB");
        assert_eq!(human_bytes(2_300_000_000), "2.3 GB");
    }
}
