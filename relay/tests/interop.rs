//! The relay between real MTAs and clients: Postfix → smtplab relay → Postfix, with and without
//! STARTTLS, and swaks and OpenSSL's s_client against the relay. Needs root and the Debian
//! packages scripts/test installs.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use relay::{InboundTls, OutboundTls};

/// A message that exercises dot-stuffing and 8-bit-free MIME, with CRLF line ends.
const MESSAGE: &str = "From: Alice <alice@src.example>\r\nTo: Bob <bob@dest.example>\r\nSubject: interop\r\n\
Message-ID: <interop-1@src.example>\r\nDate: Sat, 29 Nov 1997 12:00:00 +0000\r\n\r\n\
Hello Bob.\r\n.a line that starts with a dot\r\n..two dots\r\n.\r\nnot the end\r\nlast line\r\n";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

/// Postfix A (client side, `smtp_tls_security_level = a_level`) → relay (inbound `relay_in`,
/// outbound `relay_out`) → Postfix B (`smtpd_tls_security_level = b_level`).
fn postfix_relay_postfix(case: u8, a_level: &str, relay_in: InboundTls, relay_out: OutboundTls, b_level: &str) {
    let scratch = Scratch::new(&format!("interop-{case}"));
    let dir = &scratch.0;
    let (a_addr, relay_addr, b_addr) = (
        addr(&format!("127.0.{case}.61:2625")),
        addr(&format!("127.0.{case}.62:2626")),
        addr(&format!("127.0.{case}.63:2627")),
    );
    let (b_cert, b_key, _) = certificate("mx.dest.example");
    std::fs::create_dir_all(dir.join("b")).expect("dir");
    std::fs::write(dir.join("b/cert.pem"), b_cert).expect("cert");
    std::fs::write(dir.join("b/key.pem"), b_key).expect("key");
    let b = Postfix::start(
        &dir.join("b"),
        "mx.dest.example",
        b_addr,
        &[
            "virtual_mailbox_domains = dest.example".into(),
            format!("smtpd_tls_cert_file = {}/b/cert.pem", dir.display()),
            format!("smtpd_tls_key_file = {}/b/key.pem", dir.display()),
            format!("smtpd_tls_security_level = {b_level}"),
        ],
    );
    let a = Postfix::start(
        &dir.join("a"),
        "mx.src.example",
        a_addr,
        &[
            format!("relayhost = [{}]:{}", relay_addr.ip(), relay_addr.port()),
            format!("smtp_tls_security_level = {a_level}"),
            format!("smtp_bind_address = {}", a_addr.ip()),
        ],
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let relay = rt.block_on(start_relay(
        &dir.join("relay"),
        RelaySpec {
            listen: relay_addr,
            hostname: "relay.test.example".into(),
            inbound: relay_in,
            outbound: relay_out,
            tls: relay_in != InboundTls::None,
            routes: vec![("dest.example".into(), b_addr)],
            local_domains: vec![],
            tls_settings: Default::default(),
        },
    ));
    let msg_path = dir.join("message.eml");
    // swaks appends CRLF . CRLF itself: give it the message without its last line end.
    std::fs::write(&msg_path, MESSAGE.strip_suffix("\r\n").unwrap_or(MESSAGE)).expect("message");
    let out = swaks(a_addr, "alice@src.example", "bob@dest.example", &msg_path, &[]);
    assert!(out.status.success(), "swaks to Postfix A: {}", String::from_utf8_lossy(&out.stdout));

    let mail = b.wait_for_mail(1, Duration::from_secs(60));
    rt.block_on(relay.shutdown(Duration::from_secs(2)));
    assert_eq!(mail.len(), 1, "delivered to B.\nA log:\n{}\nB log:\n{}", a.log(), b.log());
    assert_eq!(
        String::from_utf8_lossy(&lf(&strip_trace_headers(&mail[0]))),
        String::from_utf8_lossy(&lf(MESSAGE.as_bytes())),
        "byte-identical apart from trace headers"
    );
    let text = String::from_utf8_lossy(&mail[0]);
    assert!(text.contains("by relay.test.example (smtplab)"), "the relay's Received header: {text}");

    let tls_in = relay_in != InboundTls::None && a_level != "none";
    let tls_out = relay_out != OutboundTls::None && b_level != "none";
    let records = relay_records(&dir.join("relay"));
    let inbound = records.iter().find(|r| r.direction == "inbound" && !r.messages.is_empty()).expect("inbound record");
    let outbound = records.iter().find(|r| r.direction == "outbound").expect("outbound record");
    assert_eq!(inbound.starttls_used, tls_in, "relay record, A → relay");
    assert_eq!(outbound.starttls_used, tls_out, "relay record, relay → B");
    assert_eq!(outbound.outcome, "delivered");
    // Postfix's own logs agree with the relay's records.
    assert_eq!(a.log().contains("TLS connection established to"), tls_in, "A log:\n{}", a.log());
    assert_eq!(b.log().contains("TLS connection established from"), tls_out, "B log:\n{}", b.log());
    if tls_in {
        assert!(text.contains("(using TLSv1."), "TLS facts in the relay's Received header: {text}");
    }
}

#[test]
fn postfix_relay_postfix_plaintext() {
    postfix_relay_postfix(71, "none", InboundTls::None, OutboundTls::None, "none");
}

#[test]
fn postfix_relay_postfix_may() {
    postfix_relay_postfix(72, "may", InboundTls::May, OutboundTls::May, "may");
}

#[test]
fn postfix_relay_postfix_encrypt() {
    postfix_relay_postfix(73, "encrypt", InboundTls::Encrypt, OutboundTls::Encrypt, "encrypt");
}

#[test]
fn opportunistic_falls_back_to_plaintext_when_not_offered() {
    // The 1997 design: `may` uses STARTTLS only when the next hop offers it.
    postfix_relay_postfix(74, "may", InboundTls::May, OutboundTls::May, "none");
}

/// swaks against the relay directly: plain, STARTTLS, pipelined.
#[test]
fn swaks_plain_tls_and_pipelining() {
    let scratch = Scratch::new("swaks");
    let dir = &scratch.0;
    let relay_addr = addr("127.0.75.62:2626");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let relay = rt.block_on(start_relay(
        dir,
        RelaySpec {
            listen: relay_addr,
            hostname: "relay.test.example".into(),
            inbound: InboundTls::May,
            outbound: OutboundTls::May,
            tls: true,
            routes: vec![],
            local_domains: vec!["dest.example".into()],
            tls_settings: Default::default(),
        },
    ));
    let msg_path = dir.join("message.eml");
    // swaks appends CRLF . CRLF itself: give it the message without its last line end.
    std::fs::write(&msg_path, MESSAGE.strip_suffix("\r\n").unwrap_or(MESSAGE)).expect("message");
    for (i, extra) in [vec![], vec!["--tls"], vec!["--pipeline"], vec!["--tls", "--pipeline"]].iter().enumerate() {
        let out = swaks(relay_addr, "alice@src.example", &format!("bob{i}@dest.example"), &msg_path, extra);
        let log = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "swaks {extra:?}: {log}");
        assert!(log.contains("250 2.0.0 Ok: queued as"), "swaks {extra:?}: {log}");
    }
    let unknown = swaks(relay_addr, "alice@src.example", "eve@elsewhere.example", &msg_path, &[]);
    assert!(!unknown.status.success(), "not an open relay");
    assert_eq!(rt.block_on(relay.wait_idle(Duration::from_secs(10))), 0);
    rt.block_on(relay.shutdown(Duration::from_secs(2)));
    for i in 0..4 {
        let mbox = dir.join(format!("mailboxes/dest.example/bob{i}"));
        let files: Vec<_> = std::fs::read_dir(&mbox).expect("mailbox").flatten().collect();
        assert_eq!(files.len(), 1, "{}", mbox.display());
        let got = std::fs::read(files[0].path()).expect("mail");
        assert_eq!(strip_trace_headers(&got), MESSAGE.as_bytes(), "dot-unstuffed, byte for byte");
    }
    let records = relay_records(dir);
    let tls_sessions = records.iter().filter(|r| r.direction == "inbound" && r.starttls_used).count();
    assert_eq!(tls_sessions, 2, "two of the four swaks sessions used STARTTLS");
}

/// Starts a STARTTLS-offering relay with `tls_settings` on `listen` and returns what
/// `openssl s_client -starttls smtp -brief` printed about the handshake.
fn s_client_against(name: &str, listen: &str, tls_settings: relay::TlsSettings) -> String {
    let scratch = Scratch::new(name);
    let relay_addr = addr(listen);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let relay = rt.block_on(start_relay(
        &scratch.0,
        RelaySpec {
            listen: relay_addr,
            hostname: "relay.test.example".into(),
            inbound: InboundTls::May,
            outbound: OutboundTls::May,
            tls: true,
            routes: vec![],
            local_domains: vec![],
            tls_settings,
        },
    ));
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("echo QUIT | openssl s_client -starttls smtp -connect {relay_addr} -nocommands -brief 2>&1"))
        .output()
        .expect("openssl");
    rt.block_on(relay.shutdown(Duration::from_secs(2)));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// OpenSSL's client completes the STARTTLS handshake and sees the relay's certificate.
#[test]
fn openssl_s_client_starttls() {
    let log = s_client_against("openssl", "127.0.76.62:2626", Default::default());
    assert!(log.contains("CONNECTION ESTABLISHED"), "{log}");
    assert!(log.contains("Protocol version: TLSv1.3"), "{log}");
    assert!(log.contains("relay.test.example"), "certificate names the relay: {log}");
}

/// Versions, suites and groups are configurable, and what OpenSSL negotiates follows them.
#[test]
fn tls_version_cipher_and_group_are_configurable() {
    let settings = relay::TlsSettings {
        versions: vec!["1.2".into()],
        ciphers: vec!["TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256".into()],
        groups: vec!["secp384r1".into()],
        ..Default::default()
    };
    let log = s_client_against("tlsknobs", "127.0.77.62:2626", settings);
    assert!(log.contains("Protocol version: TLSv1.2"), "{log}");
    assert!(log.contains("Ciphersuite: ECDHE-ECDSA-CHACHA20-POLY1305"), "{log}");
    assert!(log.contains("secp384r1"), "{log}");
    let bad = relay::TlsSettings { ciphers: vec!["TLS_NULL_WITH_NULL_NULL".into()], ..Default::default() };
    let cfg_err = relay::tls::client_config_any_cert(&bad, None).expect_err("unknown suite");
    assert!(cfg_err.to_string().contains("available: TLS_AES_256_GCM_SHA384"), "{cfg_err}");
}

/// What a server answers to a bare LF, in a command and in DATA: (reply code, reply text
/// without the host name, closed afterwards).
fn bare_lf_answers(server: SocketAddr) -> Vec<(u16, String, bool)> {
    use std::io::{Read, Write};
    let exchange = |steps: &[&[u8]]| -> (u16, String, bool) {
        let mut tcp = std::net::TcpStream::connect_timeout(&server, Duration::from_secs(5)).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
        let mut parser = proto::ReplyParser::new(4096);
        let mut next = |tcp: &mut std::net::TcpStream| -> Option<proto::Reply> {
            let mut buf = [0u8; 4096];
            loop {
                if let Some(r) = parser.next_reply() {
                    return r.ok();
                }
                match tcp.read(&mut buf) {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => parser.extend(&buf[..n]),
                }
            }
        };
        next(&mut tcp).expect("greeting");
        let mut last = None;
        for step in steps {
            tcp.write_all(step).expect("send");
            last = next(&mut tcp);
        }
        let r = last.expect("a reply to the last step");
        // The host name differs between the servers; the rest must not.
        let text = r.summary().split_whitespace().filter(|w| !w.contains(".example")).collect::<Vec<_>>().join(" ");
        let closed = next(&mut tcp).is_none();
        (r.code, text, closed)
    };
    vec![
        exchange(&[b"EHLO client.example\r\n", b"NOOP\n"]),
        exchange(&[
            b"EHLO client.example\r\n",
            b"MAIL FROM:<alice@src.example>\r\n",
            b"RCPT TO:<bob@dest.example>\r\n",
            b"DATA\r\n",
            // Postfix reads a message with a bare LF on to the standard end, then refuses it.
            b"Subject: outer\r\n\r\nhello\n.\nMAIL FROM:<ceo@dest.example>\r\n.\r\n",
        ]),
    ]
}

/// The relay refuses bare LF as Postfix does with `smtpd_forbid_bare_newline = reject` and
/// `smtpd_forbid_bare_newline_reject_code = 521`: the same code, enhanced status and words, and
/// the connection closed, in a command (at once) and in DATA (at the standard end of the
/// message, where `<LF>.<LF>` would have ended it for a lenient server and let a smuggled message
/// follow).
#[test]
fn bare_lf_is_refused_as_postfix_refuses_it() {
    let scratch = Scratch::new("bare-lf");
    let dir = &scratch.0;
    let (postfix_addr, relay_addr) = (addr("127.0.76.63:2627"), addr("127.0.76.62:2626"));
    let _postfix = Postfix::start(
        &dir.join("postfix"),
        "mx.dest.example",
        postfix_addr,
        &[
            "virtual_mailbox_domains = dest.example".into(),
            "smtpd_forbid_bare_newline = reject".into(),
            "smtpd_forbid_bare_newline_reject_code = 521".into(),
            // By default $mynetworks (here all of loopback) is exempt.
            "smtpd_forbid_bare_newline_exclusions =".into(),
        ],
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let relay = rt.block_on(start_relay(
        &dir.join("relay"),
        RelaySpec {
            listen: relay_addr,
            hostname: "relay.test.example".into(),
            inbound: InboundTls::May,
            outbound: OutboundTls::May,
            tls: false,
            routes: vec![],
            local_domains: vec!["dest.example".into()],
            tls_settings: Default::default(),
        },
    ));
    let from_postfix = bare_lf_answers(postfix_addr);
    let from_relay = bare_lf_answers(relay_addr);
    rt.block_on(relay.shutdown(Duration::from_secs(2)));
    assert_eq!(from_postfix[0].0, 521, "Postfix's own answer: {from_postfix:?}");
    assert_eq!(from_relay, from_postfix);
}

/// The relay's countermeasure and connection reuse against a real Postfix: three messages sent
/// to Postfix B over one reused STARTTLS connection, each padded to a power of two with NOOP
/// filler after the message (the first NOOP pipelined behind the end of data). Postfix answers
/// every command, NOOPs with their filler arguments included, with a success code (the relay's
/// record of B's replies), logs one TLS connection, and delivers each message byte for byte.
#[test]
fn postfix_accepts_padded_reused_sessions() {
    let scratch = Scratch::new("interop-padding");
    let dir = &scratch.0;
    let (relay_addr, b_addr) = (addr("127.0.78.62:2626"), addr("127.0.78.63:2627"));
    let (b_cert, b_key, _) = certificate("mx.dest.example");
    std::fs::create_dir_all(dir.join("b")).expect("dir");
    std::fs::write(dir.join("b/cert.pem"), b_cert).expect("cert");
    std::fs::write(dir.join("b/key.pem"), b_key).expect("key");
    let b = Postfix::start(
        &dir.join("b"),
        "mx.dest.example",
        b_addr,
        &[
            "virtual_mailbox_domains = dest.example".into(),
            format!("smtpd_tls_cert_file = {}/b/cert.pem", dir.display()),
            format!("smtpd_tls_key_file = {}/b/key.pem", dir.display()),
            "smtpd_tls_security_level = may".into(),
            "smtpd_tls_loglevel = 1".into(),
        ],
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut cfg = relay_config(
        &dir.join("relay"),
        RelaySpec {
            listen: relay_addr,
            hostname: "relay.test.example".into(),
            inbound: InboundTls::None,
            outbound: OutboundTls::Encrypt,
            tls: false,
            routes: vec![("dest.example".into(), b_addr)],
            local_domains: vec![],
            tls_settings: Default::default(),
        },
    );
    cfg.delivery = relay::DeliveryOptions {
        connection_reuse: relay::ConnectionReuse::Always,
        connection_cache_time_limit: 600.0,
        destination_concurrency_limit: 1,
        padding: relay::padding::Padding::PowerOfTwo,
        ..Default::default()
    };
    let relay = rt.block_on(async { relay::Relay::start(cfg).await.expect("relay starts") });
    let msg_path = dir.join("message.eml");
    std::fs::write(&msg_path, MESSAGE.strip_suffix("\r\n").unwrap_or(MESSAGE)).expect("message");
    for _ in 0..3 {
        let out = swaks(relay_addr, "alice@src.example", "bob@dest.example", &msg_path, &[]);
        assert!(out.status.success(), "swaks to the relay: {}", String::from_utf8_lossy(&out.stdout));
    }
    let mail = b.wait_for_mail(3, Duration::from_secs(60));
    rt.block_on(relay.shutdown(Duration::from_secs(5)));
    assert_eq!(mail.len(), 3, "delivered to B.\nB log:\n{}", b.log());
    for m in &mail {
        assert_eq!(
            String::from_utf8_lossy(&lf(&strip_trace_headers(m))),
            String::from_utf8_lossy(&lf(MESSAGE.as_bytes())),
            "byte-identical apart from trace headers"
        );
    }
    let outbound: Vec<_> =
        relay_records(&dir.join("relay")).into_iter().filter(|r| r.direction == "outbound").collect();
    assert_eq!(outbound.len(), 1, "one session carried the three: {outbound:?}");
    let hop = &outbound[0];
    assert_eq!(hop.messages.len(), 3);
    assert!(hop.starttls_used);
    // Greeting, EHLO, STARTTLS, EHLO; per message (RSET,) MAIL, RCPT, DATA, end of data, NOOPs;
    // QUIT: every one a success. A refused NOOP (501) would show here.
    assert!(hop.replies.iter().all(|c| matches!(c, 220 | 221 | 250 | 354)), "B's replies: {:?}", hop.replies);
    let noops_and_more = hop.replies.iter().filter(|&&c| c == 250).count();
    // Without NOOPs: EHLO twice, and per message MAIL, RCPT, end of data, plus RSET twice = 13.
    assert!(noops_and_more > 13, "NOOPs were sent and answered: {} replies of 250", noops_and_more);
    let tls = b.log().matches("TLS connection established from").count();
    assert_eq!(tls, 1, "B's log: one TLS connection\n{}", b.log());
}
