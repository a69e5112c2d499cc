//! Differential tests: [`read`] against mail-parser's full parse, on every message of the repo's
//! captures, on messages shaped like the project's generators make them, on hand-written edge
//! cases, and on seeded mutations of all of those.

use std::path::Path;

use mail_parser::MimeHeaders;

use super::*;

/// mail-parser's full parse, as the tap read it before [`read`] existed: (subject, attachments
/// as (name, content type, size, sha256)). `None` if mail-parser panics (its debug build checks
/// arithmetic overflow that a release build wraps), so the case says nothing.
fn reference(raw: &[u8]) -> Option<(Option<String>, Vec<Attachment>)> {
    std::panic::catch_unwind(|| {
        let Some(m) = MessageParser::default().parse(raw) else { return (None, Vec::new()) };
        let attachments = m
            .attachments()
            .map(|p| Attachment {
                name: p.attachment_name().map(str::to_string),
                content_type: p
                    .content_type()
                    .map(|c| match c.subtype() {
                        Some(sub) => format!("{}/{}", c.ctype(), sub),
                        None => c.ctype().to_string(),
                    })
                    .unwrap_or_else(|| "application/octet-stream".into()),
                size: p.contents().len() as u64,
                sha256: hex::encode(Sha256::digest(p.contents())),
            })
            .collect();
        (m.subject().map(str::to_string), attachments)
    })
    .ok()
}

/// What a batch of comparisons saw.
#[derive(Debug, Default)]
struct Tally {
    compared: usize,
    declined: usize,
    reference_panicked: usize,
    attachments: usize,
}

/// Compares [`read`] with the full parse on `raw`; panics with the message on a difference.
fn check(raw: &[u8], tally: &mut Tally) {
    let Some((subject, attachments)) = reference(raw) else {
        tally.reference_panicked += 1;
        return;
    };
    match read(raw) {
        None => tally.declined += 1,
        Some(got) => {
            tally.compared += 1;
            tally.attachments += attachments.len();
            let want = Read { subject, attachments };
            assert_eq!(got, want, "message:\n{}", String::from_utf8_lossy(raw).escape_debug());
        }
    }
}

/// Every whole message the tap recovers from the captures under `dir`.
fn capture_messages(dir: &Path, out: &mut Vec<Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            capture_messages(&p, out);
        } else if p.extension().is_some_and(|e| e == "pcap" || e == "pcapng") {
            let _ = crate::stream_file(&p, crate::Options { live: false, messages: true }, |_, m| {
                out.extend(m);
                std::ops::ControlFlow::Continue(())
            });
        }
    }
}

fn repo_messages() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    capture_messages(&root.join("../tests/data/pcaps"), &mut out);
    capture_messages(&root.join("tests/data/corpus"), &mut out);
    out
}

/// SplitMix64: small and seeded.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Messages shaped as `examples/gen_capture.rs` writes them (text/plain, or multipart/mixed
/// with a text part and a base64 PDF in 76-character lines), with varied sizes.
fn gen_capture_messages(rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for n in 0..12u64 {
        let mut m = format!(
            "Received: from a.example (a.example [10.0.1.1]) by b.example with ESMTP id {n:x}; Tue, 14 Nov 2023 \
             22:13:20 +0000\r\nFrom: a@a.example\r\nTo: b@b.example, c@b.example\r\nSubject: plaintext header \
             {n}\r\nDate: Tue, 14 Nov 2023 22:13:19 +0000\r\nMessage-ID: <{n:x}.1@sys1.example>\r\nMIME-Version: \
             1.0\r\nUser-Agent: smtplab-gen\r\n"
        )
        .into_bytes();
        let attach = n % 3 != 0;
        if attach {
            m.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=\"b{n:x}\"\r\n\r\n--b{n:x}\r\n").as_bytes(),
            );
        }
        m.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n\r\n");
        for _ in 0..rng.below(40) + 1 {
            m.extend_from_slice(b"envelope encrypted plaintext header words of a line\r\n");
        }
        if attach {
            m.extend_from_slice(
                format!(
                    "\r\n--b{n:x}\r\nContent-Type: application/pdf; name=\"doc{n}.pdf\"\r\nContent-Disposition: \
                     attachment; filename=\"doc{n}.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                )
                .as_bytes(),
            );
            let n = rng.below(150_000) + 1;
            let raw = rng.bytes(n);
            for chunk in raw.chunks(57) {
                m.extend_from_slice(base64_simd::STANDARD.encode_to_string(chunk).as_bytes());
                m.extend_from_slice(b"\r\n");
            }
            m.extend_from_slice(format!("--b{n:x}--\r\n").as_bytes());
        }
        out.push(m);
    }
    out
}

/// Messages as the scenarios' traffic generator builds them (mail-builder: a text body and an
/// optional binary attachment), and mail-builder's other shapes: HTML alternatives, inline
/// images, text attachments in other charsets, non-ASCII names, forwarded messages.
fn builder_messages(rng: &mut Rng) -> Vec<Vec<u8>> {
    use mail_builder::MessageBuilder;
    use mail_builder::mime::MimePart;
    let mut out = Vec::new();
    let base = |i: usize| {
        MessageBuilder::new()
            .from(("Alice Example", "alice@a.example"))
            .to(vec![("Bob", "bob@b.example"), ("Carol", "carol@c.example")])
            .subject(format!("Quarterly note {i}"))
            .message_id(format!("{i}@a.example"))
            .date(1_700_000_000i64 + i as i64)
            .header("User-Agent", mail_builder::headers::raw::Raw::new("smtplab-traffic/0.1"))
    };
    for i in 0..6 {
        let size = [16, 200, 3000, 50_000, 1, 70_000][i];
        let body = "word ".repeat(rng.below(400) + 1);
        let mut b = base(i).text_body(body.clone());
        if i % 2 == 0 {
            b = b.attachment("application/octet-stream", format!("note-{i}.bin"), rng.bytes(size));
        }
        out.extend(b.write_to_vec().ok());
        let b = base(i)
            .subject("Caf\u{e9} \u{2603} r\u{e9}sum\u{e9} \u{65e5}\u{672c}")
            .text_body(body.clone())
            .html_body(format!("<p>{body}</p>"))
            .inline("image/png", "logo", rng.bytes(size))
            .attachment("text/csv", "donn\u{e9}es \u{e9}t\u{e9}.csv", "a;b\r\n\u{e9};\u{fc}\r\n")
            .attachment("application/pdf", "\u{65e5}\u{672c}.pdf", rng.bytes(size / 2 + 1));
        out.extend(b.write_to_vec().ok());
        let inner = base(100 + i).text_body("forwarded").write_to_vec().unwrap_or_default();
        let b = base(i).text_body("see attached").attachment("message/rfc822", "fwd.eml", inner);
        out.extend(b.write_to_vec().ok());
        let b = base(i).body(MimePart::new(
            "multipart/mixed",
            vec![
                MimePart::new(
                    "multipart/alternative",
                    vec![MimePart::new("text/plain", "plain"), MimePart::new("text/html", "<b>html</b>")],
                ),
                MimePart::new(
                    "multipart/related",
                    vec![
                        MimePart::new("text/html", "<img src=cid:x>"),
                        MimePart::new("image/gif", rng.bytes(size % 5000 + 1)).inline().cid("x"),
                    ],
                ),
                MimePart::new("text/plain", "\u{e9}t\u{e9} \u{e0} la plage".repeat(i + 1)).attachment("notes.txt"),
            ],
        ));
        out.extend(b.write_to_vec().ok());
    }
    out
}

/// One message per case named in the task: each MIME structure and encoding mail-parser reads
/// in its own way.
fn edge_cases() -> Vec<Vec<u8>> {
    let h = "From: a@b\r\nSubject: edge\r\nMIME-Version: 1.0\r\n";
    let mp = |ct: &str, body: &str| format!("{h}Content-Type: {ct}\r\n\r\n{body}").into_bytes();
    let b64 = "aGVsbG8gd29ybGQ=";
    let mut v: Vec<Vec<u8>> = vec![
        // Subjects.
        b"Subject: =?utf-8?q?caf=C3=A9?=\r\nFrom: a@b\r\n\r\nhello\r\n".to_vec(),
        b"Subject: =?iso-8859-1?B?Y2Fm6Q==?= =?utf-8?Q?_x?=\r\n\r\nhi\r\n".to_vec(),
        b"Subject: first\r\nSubject: second\r\n\r\nhi\r\n".to_vec(),
        b"Subject:\r\n\r\nhi\r\n".to_vec(),
        b"Subject: folded\r\n  over two\r\n\r\nhi\r\n".to_vec(),
        b"Subject: x\r\n \r\nContent-Type: image/png; name=a.png\r\n\r\nxx".to_vec(),
        b"Garbage line\r\n Content-Type: image/png; name=a.png\r\n\r\nbody".to_vec(),
        b" Content-Type: application/pdf\r\n\r\nbody".to_vec(),
        b"no headers at all".to_vec(),
        b"".to_vec(),
        b"\r\n\r\n".to_vec(),
        b"Subject: only headers".to_vec(),
        b"Subject: only headers\r\n".to_vec(),
        // Single parts.
        mp("text/plain; charset=utf-8", "hello\r\n"),
        mp("text/plain", "hello\r\n").into_iter().chain(b"".iter().copied()).collect(),
        format!("{h}Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64\r\n").into(),
        format!("{h}Content-Type: text/plain\r\nContent-Disposition: attachment; filename=a.txt\r\n\r\nhi\r\n").into(),
        format!(
            "{h}Content-Type: text/plain\r\nContent-Disposition: attachment; filename=a.txt\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n!!!\r\n"
        )
        .into(),
        mp("text/plain; name=a.txt", "hi\r\n"),
        mp("Text/Plain", "hi\r\n"),
        mp("text/html", "<p>hi</p>\r\n"),
        format!("{h}Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!\r\n").into(),
        mp("application/pdf", "%PDF\r\n"),
        format!("{h}Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n").into(),
        format!("{h}Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--x\r\n").into(),
        format!("{h}Content-Type: image/png\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\na=3Db=\r\nc\r\n")
            .into(),
        [format!("{h}Content-Type: text/csv; charset=iso-8859-1\r\n\r\n").into_bytes(), b"caf\xe9\r\n".to_vec()]
            .concat(),
        mp("text/csv; charset=iso-8859-1", "caf\u{e9}\r\n"),
        [format!("{h}Content-Type: text/csv\r\n\r\n").into_bytes(), b"bad \xff\xfe utf8\r\n".to_vec()].concat(),
        [format!("{h}Content-Type: text/csv; charset=utf-16\r\n\r\n").into_bytes(), b"a\0b\0".to_vec()].concat(),
        mp("message/rfc822", "Subject: inner\r\n\r\nbody\r\n"),
        format!("{h}Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n").into(),
        mp("multipart/mixed", "no boundary parameter\r\n"),
        mp("multipart/mixed; boundary=zz", "boundary never comes\r\n"),
        mp("video/mp4; name=\"a.mp4\"", "x"),
        mp("audio/ogg", "x"),
        mp("application/x-thing; name*=utf-8''%E6%97%A5.bin", "x"),
        // Multiparts.
        mp(
            "multipart/mixed; boundary=\"b\"",
            &format!(
                "preamble\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: image/png; \
                 name=a.png\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--b--\r\nepilogue\r\n"
            ),
        ),
        mp(
            "multipart/mixed; boundary=b",
            &format!("--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n"),
        ),
        mp("multipart/mixed; boundary=b", "--b\r\nContent-Type: application/pdf\r\n\r\nraw bytes, no end boundary\r\n"),
        mp("multipart/mixed; boundary=b", "--b\r\nContent-Type: text/plain\r\n\r\ntext, no end boundary\r\n"),
        mp("multipart/mixed; boundary=b", "--b\r\n\r\nno headers in part\r\n--b--\r\n"),
        mp("multipart/mixed; boundary=b", "--b\r\nContent-Type: text/plain\r\n\r\n--b\r\n\r\n--b--"),
        mp("multipart/mixed; boundary=b", "--b--\r\n"),
        mp("multipart/mixed; boundary=b", "--b"),
        mp(
            "multipart/mixed; boundary=b",
            "--b\r\nContent-Type: application/octet-stream\r\n\r\nmid--b line\r\n--b--\r\n",
        ),
        mp(
            "multipart/mixed; boundary=b",
            "--b\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\naGVs\nbG8=\n--b--\n",
        ),
        mp(
            "multipart/mixed; boundary=\"=_weird (b) ?\"",
            "--=_weird (b) ?\r\nContent-Type: application/zip\r\n\r\nPK\r\n--=_weird (b) ?--\r\n",
        ),
        mp(
            "multipart/alternative; boundary=a",
            "--a\r\nContent-Type: text/plain\r\n\r\nplain\r\n--a\r\nContent-Type: text/html\r\n\r\n<b>h</b>\r\n--a\r\n\
             Content-Type: text/enriched\r\n\r\nrich\r\n--a--\r\n",
        ),
        mp("multipart/alternative; boundary=a", "--a\r\nContent-Type: text/html\r\n\r\n<b>only html</b>\r\n--a--\r\n"),
        mp(
            "multipart/mixed; boundary=m",
            "--m\r\nContent-Type: multipart/alternative; boundary=a\r\n\r\n--a\r\nContent-Type: text/plain\r\n\r\n\
             p\r\n--a\r\nContent-Type: multipart/related; boundary=r\r\n\r\n--r\r\nContent-Type: text/html\r\n\r\n\
             <img>\r\n--r\r\nContent-Type: image/png; name=i.png\r\n\r\nPNG\r\n--r\r\nContent-Type: text/plain; \
             name=n.txt\r\n\r\nnamed\r\n--r--\r\n--a--\r\n--m\r\nContent-Type: text/html\r\n\r\n<p>second \
             html</p>\r\n--m\r\nContent-Type: text/plain\r\n\r\nsecond text\r\n--m--\r\n",
        ),
        mp(
            "multipart/related; boundary=r",
            "--r\r\nContent-Type: text/html\r\n\r\n<img>\r\n--r\r\nContent-Type: text/plain; name=a.txt\r\n\r\n\
             t\r\n--r\r\nContent-Type: image/gif; name=g.gif\r\n\r\nGIF\r\n--r--\r\n",
        ),
        mp(
            "multipart/mixed; boundary=b",
            "--b\r\nContent-Type: text/plain\r\nContent-Disposition: inline\r\n\r\ninline text\r\n--b\r\n\
             Content-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nattached text\r\n--b\r\n\
             Content-Type: image/jpeg\r\nContent-Disposition: inline; filename=in.jpg\r\n\r\nJPG\r\n--b\r\n\
             Content-Disposition: attachment; filename=\"noct.dat\"\r\n\r\nno type\r\n--b\r\n\
             Content-Type: application/pdf; name=ct-name.pdf\r\nContent-Disposition: attachment; \
             filename=cd-name.pdf\r\n\r\n%PDF\r\n--b--\r\n",
        ),
        // Names: encoded words, RFC 2231 (with continuations), quoted with blanks.
        mp(
            "multipart/mixed; boundary=b",
            "--b\r\nContent-Type: application/pdf; name=\"=?utf-8?B?5pel5pys?=.pdf\"\r\n\r\nx\r\n--b\r\n\
             Content-Type: application/pdf\r\nContent-Disposition: attachment; \
             filename*=utf-8''%C3%A9t%C3%A9.pdf\r\n\r\nx\r\n--b\r\nContent-Type: application/pdf\r\n\
             Content-Disposition: attachment;\r\n filename*0=\"long\";\r\n filename*1=\"name.pdf\"\r\n\r\nx\r\n--b\r\n\
             Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"with blanks .pdf\"\r\n\r\n\
             x\r\n--b\r\nContent-Type: application/pdf; name==?iso-8859-1?Q?caf=E9?=\r\n\r\nx\r\n--b--\r\n",
        ),
        // Quoted-printable parts, text and binary, with soft breaks and a bad escape.
        mp(
            "multipart/mixed; boundary=b",
            "--b\r\nContent-Type: text/plain; charset=iso-8859-1; name=q.txt\r\nContent-Transfer-Encoding: \
             quoted-printable\r\n\r\ncaf=E9 soft=\r\nbreak trailing   \r\n--b\r\nContent-Type: application/pdf\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n=00=FF=\r\n=ZZ\r\n--b\r\nContent-Type: \
             application/pdf\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nbad == escape\r\n--b--\r\n",
        ),
        // Lenient base64: blanks, lone dashes, padding mid-stream, garbage, a "--" that is not
        // the boundary, lines not in multiples of four.
        mp(
            "multipart/mixed; boundary=b",
            "--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\naGVs bG8g\td29y\r\n\
             bGQ=\r\n--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\naGVs-bG8=\r\n\
             --b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: BASE64\r\n\r\nQQ==QUJD\r\nQ=QUJD\r\n\
             --b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\naGVs!!bG8=\r\n--b\r\n\
             Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\naGVs--bG8=\r\n--b\r\n\
             Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\naGV\r\nsbG\r\n8\r\n--b--\r\n",
        ),
        mp(
            "multipart/mixed; boundary=b",
            "--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!\r\n--b\r\n\
             Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n***\r\n--b--\r\n",
        ),
        mp(
            "multipart/alternative; boundary=b",
            "--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!\r\n--b--\r\n",
        ),
        // Nested messages: in line (declined) and encoded.
        mp(
            "multipart/mixed; boundary=b",
            "--b\r\nContent-Type: text/plain\r\n\r\nsee\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n\
             Subject: inner\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\nContent-Type: \
             application/pdf; name=in.pdf\r\n\r\n%PDF\r\n--c--\r\n--b--\r\n",
        ),
        mp(
            "multipart/mixed; boundary=b",
            "--b\r\nContent-Type: message/rfc822; name=m.eml\r\nContent-Transfer-Encoding: base64\r\n\r\n\
             U3ViamVjdDogaW5uZXINCg0KYm9keQ0K\r\n--b--\r\n",
        ),
        mp(
            "multipart/digest; boundary=d",
            "--d\r\n\r\nSubject: digest one\r\n\r\nbody\r\n--d\r\nContent-Type: text/plain\r\n\r\nplain\r\n--d--\r\n",
        ),
        mp(
            "multipart/digest; boundary=d",
            "--d\r\nContent-Transfer-Encoding: base64\r\n\r\nU3ViamVjdDogZA0KDQpi\r\n--d--\r\n",
        ),
        // Two Content-Type headers (the last wins), odd header spellings.
        format!("{h}Content-Type: text/plain\r\nContent-Type: application/pdf; name=z.pdf\r\n\r\n%PDF\r\n").into(),
        format!("{h}content-type : APPLICATION/PDF ; NAME=\"up.pdf\"\r\n\r\n%PDF\r\n").into(),
        format!("{h}Content-Type: application/pdf\r\nContent-Transfer-Encoding: \"base64\"\r\n\r\n{b64}\r\n").into(),
        format!("{h}Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64 (c)\r\n\r\n{b64}\r\n").into(),
    ];
    // LF-only copies of every case.
    let lf: Vec<Vec<u8>> = v.iter().map(|m| String::from_utf8_lossy(m).replace("\r\n", "\n").into_bytes()).collect();
    v.extend(lf);
    v
}

/// A mutation of `m`: what damaged captures and hostile senders do to messages.
fn mutate(m: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = m.to_vec();
    let len = v.len().max(1);
    match rng.below(10) {
        0 => {
            for _ in 0..rng.below(8) + 1 {
                let i = rng.below(len);
                if let Some(b) = v.get_mut(i) {
                    *b ^= 1 << rng.below(8);
                }
            }
        }
        1 => v.truncate(rng.below(len)),
        2 => {
            // Insert a delimiter of some boundary of the message, or a made-up one.
            let text = String::from_utf8_lossy(m).into_owned();
            let b = text.split("boundary=").nth(1).map(|r| r.trim_start_matches('"')).unwrap_or("b");
            let b: String = b.chars().take_while(|c| !matches!(c, '"' | '\r' | '\n' | ';')).collect();
            let ins = [format!("\r\n--{b}\r\n"), format!("--{b}--"), format!("\r\n--{b}\r\nContent-Type: x/y\r\n\r\n")]
                [rng.below(3)]
            .clone();
            let i = rng.below(len);
            v.splice(i.min(v.len())..i.min(v.len()), ins.into_bytes());
        }
        3 => {
            let garbage: &[&[u8]] = &[b" ", b"\t", b"-", b"--", b"=", b"==", b"!", b"\r", b"\n", b"\xff", b"=?"];
            for _ in 0..rng.below(4) + 1 {
                let i = rng.below(len).min(v.len());
                v.splice(i..i, garbage[rng.below(garbage.len())].iter().copied());
            }
        }
        4 => {
            // Delete a span.
            let i = rng.below(len).min(v.len());
            let j = (i + rng.below(200)).min(v.len());
            v.drain(i..j);
        }
        5 => {
            // Duplicate a span.
            let i = rng.below(len).min(v.len());
            let j = (i + rng.below(300)).min(v.len());
            let span: Vec<u8> = v.get(i..j).unwrap_or_default().to_vec();
            v.splice(j..j, span);
        }
        6 => v = String::from_utf8_lossy(&v).replace("\r\n", "\n").into_bytes(),
        7 => {
            // Change a header the parser keys on.
            let text = String::from_utf8_lossy(&v).into_owned();
            let swaps = [
                ("base64", "quoted-printable"),
                ("quoted-printable", "base64"),
                ("attachment", "inline"),
                ("inline", "attachment"),
                ("multipart/mixed", "multipart/alternative"),
                ("multipart/alternative", "multipart/related"),
                ("application/pdf", "text/plain"),
                ("text/plain", "message/rfc822"),
                ("text/html", "multipart/digest"),
                ("charset=utf-8", "charset=iso-8859-1"),
                ("Content-Transfer-Encoding: base64", "Content-Transfer-Encoding: 8bit"),
            ];
            let (from, to) = swaps[rng.below(swaps.len())];
            v = text.replacen(from, to, 1).into_bytes();
        }
        8 => {
            // Swap two lines.
            let mut lines: Vec<&[u8]> = m.split_inclusive(|&b| b == b'\n').collect();
            let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
            if a < lines.len() && b < lines.len() {
                lines.swap(a, b);
            }
            v = lines.concat();
        }
        _ => {
            let i = rng.below(len).min(v.len());
            v.truncate(i);
            let n = rng.below(64);
            v.extend_from_slice(&rng.bytes(n));
        }
    }
    v
}

#[test]
fn repo_captures_match_a_full_parse() {
    let messages = repo_messages();
    assert!(messages.len() >= 20, "only {} messages in the repo's captures", messages.len());
    let mut tally = Tally::default();
    for m in &messages {
        check(m, &mut tally);
    }
    assert!(tally.attachments > 0, "{tally:?}");
    eprintln!("repo captures: {} messages, {tally:?}", messages.len());
}

#[test]
fn generated_messages_match_a_full_parse() {
    let mut rng = Rng(7);
    let mut tally = Tally::default();
    for m in gen_capture_messages(&mut rng).iter().chain(&builder_messages(&mut rng)) {
        check(m, &mut tally);
    }
    // Every generated message is one the fast path reads itself: none is declined.
    assert_eq!(tally.declined, 0, "{tally:?}");
    eprintln!("generated: {tally:?}");
}

#[test]
fn edge_cases_match_a_full_parse() {
    let mut tally = Tally::default();
    for m in edge_cases() {
        check(&m, &mut tally);
    }
    eprintln!("edge cases: {tally:?}");
}

/// Seeded mutations of every kind of message above, small ones whole and large ones cut to
/// their first 24 KiB (the debug build's mail-parser is slow): 2,000 of them, or
/// `MIME_MUTATIONS` from seed `MIME_SEED` for a longer campaign by hand.
#[test]
fn mutations_match_a_full_parse() {
    let var = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let rounds = var("MIME_MUTATIONS", 2000);
    let mut rng = Rng(var("MIME_SEED", 2026));
    let mut seeds: Vec<Vec<u8>> = repo_messages();
    seeds.extend(gen_capture_messages(&mut rng));
    seeds.extend(builder_messages(&mut rng));
    seeds.extend(edge_cases());
    for s in &mut seeds {
        s.truncate(24 * 1024);
    }
    let mut tally = Tally::default();
    for _ in 0..rounds {
        let seed = &seeds[rng.below(seeds.len())];
        let mut m = mutate(seed, &mut rng);
        if rng.below(4) == 0 {
            m = mutate(&m, &mut rng);
        }
        check(&m, &mut tally);
    }
    assert!(tally.compared as u64 > rounds * 3 / 4, "{tally:?}");
    eprintln!("mutations: {tally:?}");
}

/// `read_headers` as a whole (fast path, or the full parse for what it declines) gives the
/// full parse's subject and attachments.
#[test]
fn read_headers_matches_a_full_parse() {
    let mut rng = Rng(11);
    let mut all = edge_cases();
    all.extend(builder_messages(&mut rng));
    for m in all {
        let Some((subject, attachments)) = reference(&m) else { continue };
        let mut tx = records::TapTransaction::default();
        crate::message::read_headers(&m, &mut tx);
        let raw_subject = crate::message::top_level_headers(&m)
            .into_iter()
            .rev()
            .find(|(n, _)| n.eq_ignore_ascii_case("subject"))
            .map(|(_, v)| v);
        assert_eq!((tx.subject, tx.attachments), (subject.or(raw_subject), attachments));
    }
}

/// (name, where the field starts, where its value ends) of every header of the block at the
/// start of `raw`, whether the block ended with an empty line, and where the stream stopped.
type Block = (Vec<(String, u32, u32)>, bool, usize);

fn header_block(raw: &[u8], parser: &MessageParser) -> Block {
    let mut stream = MessageStream::new(raw);
    let mut headers = Vec::new();
    let ended = stream.parse_headers(parser, &mut headers);
    let fields = headers.iter().map(|h| (h.name.as_str().to_string(), h.offset_field, h.offset_end)).collect();
    (fields, ended, stream.offset())
}

/// Random header blocks from the pieces that steer mail-parser's value parsers: comments,
/// quotes, escapes, brackets, encoded words (good and broken, folded inside), time zones,
/// folding with and without blanks, bare CRs and LFs.
fn random_header_block(rng: &mut Rng) -> Vec<u8> {
    const NAMES: &[&str] = &[
        "Received",
        "From",
        "To",
        "Cc",
        "Reply-To",
        "Sender",
        "Date",
        "Resent-Date",
        "Message-ID",
        "References",
        "In-Reply-To",
        "Return-Path",
        "Content-ID",
        "Keywords",
        "Content-Language",
        "Comments",
        "Content-Description",
        "Subject",
        "Content-Type",
        "Content-Disposition",
        "Content-Transfer-Encoding",
        "MIME-Version",
        "X-Mailer",
        "List-Id",
        "Resent-From",
    ];
    const PIECES: &[&str] = &[
        "word",
        " ",
        "\t",
        "(",
        ")",
        "\"",
        "\\",
        "<",
        ">",
        "[",
        "]",
        ":",
        ";",
        ",",
        "@",
        "=",
        "?",
        "+",
        "-",
        "\r",
        "\n",
        "\r\n",
        "\r\n ",
        "\n\t",
        "\r\n\r\n",
        "=?utf-8?b?w6k=?=",
        "=?utf-8?q?caf=C3=A9?=",
        "=?utf-8?b?w6\n k=?=",
        "=?utf-8?b?w6\nk=?=",
        "=?utf-8?q?a\n b?=",
        "=?utf-8?q?a\nb?=",
        "=?x?",
        "=?utf-8?z?a?=",
        "+A",
        "-EST",
        "+0100",
        "Mon, 1 Jan 2024 10:00:00",
        "EST",
        "\u{e9}",
        "from a.example [10.0.0.1] by b",
        "with ESMTP id x",
        "\0",
    ];
    let mut v = Vec::new();
    for _ in 0..rng.below(8) + 1 {
        v.extend_from_slice(NAMES[rng.below(NAMES.len())].as_bytes());
        v.extend_from_slice(if rng.below(8) == 0 { b" :" } else { b":" });
        for _ in 0..rng.below(12) {
            v.extend_from_slice(PIECES[rng.below(PIECES.len())].as_bytes());
        }
        v.extend_from_slice(if rng.below(6) == 0 { b"\n" } else { b"\r\n" });
    }
    v.extend_from_slice(b"\r\nbody\r\n");
    v
}

/// The header parser that skips values ends every header, and every block, exactly where the
/// default parser does: on 20,000 random blocks (`MIME_HEADER_BLOCKS` for more), and from every
/// line start of the test messages (where a part's headers may begin).
#[test]
fn header_blocks_end_where_the_default_parser_ends_them() {
    let default = MessageParser::default();
    let blocks = std::env::var("MIME_HEADER_BLOCKS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let mut rng = Rng(std::env::var("MIME_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(5));
    for _ in 0..blocks {
        let block = random_header_block(&mut rng);
        assert_eq!(
            header_block(&block, &HEADER_PARSER),
            header_block(&block, &default),
            "{}",
            String::from_utf8_lossy(&block).escape_debug()
        );
    }
    let mut messages = repo_messages();
    messages.extend(edge_cases());
    messages.extend(builder_messages(&mut rng));
    for m in &messages {
        let starts = std::iter::once(0).chain(memchr::memchr_iter(b'\n', m).map(|i| i + 1)).take(300);
        for start in starts {
            let rest = &m[start.min(m.len())..];
            assert_eq!(header_block(rest, &HEADER_PARSER), header_block(rest, &default));
        }
    }
}

/// Why dates keep their parser: after `+` and a letter it takes two more bytes, here the line
/// break, so the default parser reads the Subject as part of the Date.
#[test]
fn a_zone_letter_runs_the_date_into_the_next_header() {
    let raw = b"Date: 1 Jan 2024 10:00 +Z\r\nSubject: hidden\r\n\r\nbody";
    let subjects = |p: &MessageParser| header_block(raw, p).0.iter().filter(|h| h.0 == "Subject").count();
    assert_eq!(subjects(&MessageParser::default()), 0);
    assert_eq!(subjects(&HEADER_PARSER), 0);
    // (A parser with no header of its own parses them all as the default does: name one.)
    let skip_all = MessageParser::new().header_text(HeaderName::Subject).default_header_ignore();
    assert_eq!(subjects(&skip_all), 1);
}

/// A text attachment without a charset is recorded as mail-parser reads it, its bytes made text
/// with `String::from_utf8_lossy`, but hashed as it goes: a body of invalid bytes would triple.
#[test]
fn a_text_attachment_of_invalid_utf8_is_hashed_as_its_lossy_text() {
    for bytes in [&b"ok \xff\xfe tail \xc3"[..], b"\xff", b"", b"plain", b"\xe2\x82 cut \xf0\x9f\x98\x80 emoji \x80"] {
        let mut sink = PartSink::new(true, true);
        sink.bytes(bytes);
        let a = sink.finish(None, None).expect("kept");
        let text = String::from_utf8_lossy(bytes);
        assert_eq!((a.size, a.sha256), (text.len() as u64, hex::encode(Sha256::digest(text.as_bytes()))), "{bytes:?}");
    }
}
