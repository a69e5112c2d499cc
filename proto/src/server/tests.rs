//! The server session driven with byte vectors, as the relay drives it with sockets. Expected
//! replies are written out by hand in Postfix's wording (the relay answers as Postfix 3.7 does),
//! not taken from the session's own strings.

use super::*;

fn config() -> ServerConfig {
    ServerConfig {
        hostname: "mx.b.test".into(),
        max_line: 100,
        max_message_bytes: 64,
        max_recipients: 2,
        starttls: true,
        require_tls: false,
    }
}

/// What a driver saw over a whole session.
#[derive(Debug, Default, PartialEq, Eq)]
struct Transcript {
    /// Everything the server sent, in order.
    sent: String,
    messages: Vec<Message>,
    /// How the session ended, if it did before the input ran out.
    closed: Option<Close>,
    /// Flights of replies: one per time the driver sent the output before reading.
    flights: usize,
}

/// A driver: feeds `wire` in pieces of `piece` bytes, accepts recipients outside `refused.test`,
/// queues every message, completes every STARTTLS at once.
fn drive(cfg: ServerConfig, wire: &[u8], piece: usize) -> Transcript {
    let mut s = ServerSession::new(cfg);
    let mut t = Transcript::default();
    let mut chunks = wire.chunks(piece.max(1));
    let send = |s: &mut ServerSession, t: &mut Transcript| {
        if !s.output().is_empty() {
            t.sent.push_str(&String::from_utf8_lossy(s.output()));
            t.flights += 1;
            s.output_sent();
        }
    };
    loop {
        match s.poll() {
            Event::Read(_) => {
                send(&mut s, &mut t);
                match chunks.next() {
                    Some(c) => s.feed(c),
                    None => return t,
                }
            }
            Event::Recipient(to) => {
                let refused = to.ends_with("@refused.test");
                s.recipient(if refused {
                    Err(Reply::new(554, format!("5.7.1 <{to}>: Relay access denied")))
                } else {
                    Ok(())
                })
            }
            Event::Message(m) => {
                t.messages.push(m);
                s.queued(Reply::new(250, "2.0.0 Ok: queued as Q1"));
            }
            Event::StartTls => {
                send(&mut s, &mut t);
                s.tls_established();
            }
            Event::Close(why) => {
                send(&mut s, &mut t);
                t.closed = Some(why);
                return t;
            }
            Event::Waiting => panic!("the driver answered every question"),
        }
    }
}

const EHLO_PLAIN: &str = "250-mx.b.test\r\n250-PIPELINING\r\n250-SIZE 64\r\n250-8BITMIME\r\n\
                          250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250 STARTTLS\r\n";

#[test]
fn a_pipelined_transaction_in_any_pieces() {
    let wire = b"EHLO a.test\r\nMAIL FROM:<u@a.test> SIZE=20\r\nRCPT TO:<v@b.test>\r\nDATA\r\n\
                 Subject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n";
    let want_sent = format!(
        "220 mx.b.test ESMTP smtplab\r\n{EHLO_PLAIN}250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n\
         354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as Q1\r\n221 2.0.0 Bye\r\n"
    );
    let want_message = Message {
        from: "u@a.test".into(),
        rcpts: vec!["v@b.test".into()],
        requiretls: false,
        helo: Some("a.test".into()),
        content: b"Subject: x\r\n\r\n.dot\r\n".to_vec(),
    };
    for piece in 1..=wire.len() {
        let t = drive(config(), wire, piece);
        assert_eq!(t.sent, want_sent, "pieces of {piece}");
        assert_eq!(t.messages, vec![want_message.clone()], "pieces of {piece}");
        assert_eq!(t.closed, Some(Close::Quit));
    }
    // In one flight, the replies up to the end of the message go out in one write (RFC 2920):
    // greeting, then EHLO..354 with the message's 250 and the 221 after it.
    assert_eq!(drive(config(), wire, wire.len()).flights, 2);
}

#[test]
fn replies_table() {
    // (wire, replies after the greeting, how it ends)
    type Case = (&'static [u8], &'static str, Option<Close>);
    let cases: &[Case] = &[
        (b"MAIL FROM:<u@a.test>\r\n", "503 5.5.1 Error: send HELO/EHLO first\r\n", None),
        (b"HELO a\r\nRCPT TO:<v@b.test>\r\n", "250 mx.b.test\r\n503 5.5.1 Error: need MAIL command\r\n", None),
        (b"HELO a\r\nMAIL FROM:<u@a>\r\nDATA\r\n", "250 mx.b.test\r\n250 2.1.0 Ok\r\n554 5.5.1 Error: no valid recipients\r\n", None),
        (b"HELO a\r\nDATA\r\n", "250 mx.b.test\r\n503 5.5.1 Error: need RCPT command\r\n", None),
        (
            b"HELO a\r\nMAIL FROM:<u@a>\r\nMAIL FROM:<u@a>\r\n",
            "250 mx.b.test\r\n250 2.1.0 Ok\r\n503 5.5.1 Error: nested MAIL command\r\n",
            None,
        ),
        (b"HELO a\r\nMAIL FROM:<u@a> SIZE=65\r\n", "250 mx.b.test\r\n552 5.3.4 Error: message size exceeds fixed limit\r\n", None),
        (b"HELO a\r\nMAIL FROM:<u@a> SIZE=64\r\n", "250 mx.b.test\r\n250 2.1.0 Ok\r\n", None),
        (
            b"HELO a\r\nMAIL FROM:<u@a> REQUIRETLS\r\n",
            "250 mx.b.test\r\n555 5.5.4 REQUIRETLS is offered only after STARTTLS\r\n",
            None,
        ),
        (
            b"HELO a\r\nMAIL FROM:<u@a>\r\nRCPT TO:<x@b>\r\nRCPT TO:<y@refused.test>\r\nRCPT TO:<z@b>\r\nRCPT TO:<w@b>\r\n",
            "250 mx.b.test\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n554 5.7.1 <y@refused.test>: Relay access denied\r\n\
             250 2.1.5 Ok\r\n452 4.5.3 Error: too many recipients\r\n",
            None,
        ),
        (b"EHLO\r\n", "501 5.5.4 Syntax: EHLO hostname\r\n", None),
        (b"NOOP\r\nRSET\r\nHELP\r\n", "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n214 2.0.0 See RFC 5321\r\n", None),
        (b"VRFY u\r\n", "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery\r\n", None),
        (b"EXPN list\r\nAUTH PLAIN\r\n", "502 5.5.1 Error: command not implemented\r\n502 5.5.1 Error: command not implemented\r\n", None),
        (b"FROB\r\n", "500 5.5.2 Error: command not recognized\r\n", None),
        (
            b"NOOP 0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\r\nNOOP\r\n",
            "500 5.5.2 Error: line too long\r\n250 2.0.0 Ok\r\n",
            None,
        ),
        // A bare LF or CR in a command: 521 at once, and the session ends (Postfix's
        // smtpd_forbid_bare_newline = reject, code 521).
        (b"NOOP\nNOOP\r\n", "521 5.5.2 mx.b.test Error: bare <LF> received\r\n", Some(Close::BareNewline(Bare::Lf))),
        (b"NO\rOP\r\n", "521 5.5.2 mx.b.test Error: bare <CR> received\r\n", Some(Close::BareNewline(Bare::Cr))),
        (b"BDAT x\r\n", "501 5.5.4 Syntax: BDAT chunk-size [LAST]\r\n", Some(Close::BadBdatSize)),
        (b"QUIT\r\nNOOP\r\n", "221 2.0.0 Bye\r\n", Some(Close::Quit)),
        // CVE-2011-0411: a command behind STARTTLS in the same flight ends the session.
        (
            b"EHLO a\r\nSTARTTLS\r\nMAIL FROM:<u@a>\r\n",
            "EHLO\r\n554 5.5.1 Error: command pipelined after STARTTLS\r\n",
            Some(Close::PipelinedAfterStartTls),
        ),
    ];
    for (wire, want, closed) in cases {
        let t = drive(config(), wire, wire.len());
        let want = format!("220 mx.b.test ESMTP smtplab\r\n{}", want.replace("EHLO\r\n", EHLO_PLAIN));
        assert_eq!(t.sent, want, "{:?}", String::from_utf8_lossy(wire));
        assert_eq!(t.closed, *closed, "{:?}", String::from_utf8_lossy(wire));
        assert!(t.messages.is_empty());
    }
}

#[test]
fn starttls_forgets_the_plaintext_session() {
    let wire = b"EHLO a\r\nMAIL FROM:<u@a>\r\nSTARTTLS\r\nMAIL FROM:<u@a>\r\nEHLO a2\r\nMAIL FROM:<u@a> REQUIRETLS\r\n\
                 RCPT TO:<v@b>\r\nDATA\r\nhi\r\n.\r\nSTARTTLS\r\n";
    // Fed command by command, as a client waiting for each reply would send them.
    let t = drive(config(), wire, 1);
    let inside = "250-mx.b.test\r\n250-PIPELINING\r\n250-SIZE 64\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n\
                  250-CHUNKING\r\n250 REQUIRETLS\r\n";
    let want = format!(
        "220 mx.b.test ESMTP smtplab\r\n{EHLO_PLAIN}250 2.1.0 Ok\r\n220 2.0.0 Ready to start TLS\r\n\
         503 5.5.1 Error: send HELO/EHLO first\r\n{inside}250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n\
         354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as Q1\r\n503 5.5.1 Error: TLS already active\r\n"
    );
    assert_eq!(t.sent, want);
    assert_eq!(t.messages.len(), 1);
    assert!(t.messages[0].requiretls);
    assert_eq!(t.messages[0].helo.as_deref(), Some("a2"));
    assert_eq!(t.messages[0].content, b"hi\r\n");
}

#[test]
fn starttls_not_offered_and_tls_required() {
    let cfg = ServerConfig { starttls: false, require_tls: true, ..config() };
    let t = drive(cfg, b"EHLO a\r\nSTARTTLS\r\nMAIL FROM:<u@a>\r\n", 100);
    let ehlo = "250-mx.b.test\r\n250-PIPELINING\r\n250-SIZE 64\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n\
                250 CHUNKING\r\n";
    assert_eq!(
        t.sent,
        format!(
            "220 mx.b.test ESMTP smtplab\r\n{ehlo}502 5.5.1 Error: command not implemented\r\n\
             530 5.7.0 Must issue a STARTTLS command first\r\n"
        )
    );
}

#[test]
fn smuggling_behind_a_bare_lf_is_content_of_a_refused_message() {
    // The smuggled `<LF>.<LF>` and the transaction behind it must never be taken as a message end
    // and commands; the message is refused at the real `<CRLF>.<CRLF>`, and the session ends.
    let wire = b"HELO a\r\nMAIL FROM:<u@a>\r\nRCPT TO:<v@b>\r\nDATA\r\nhello\n.\nMAIL FROM:<evil@a>\r\n\
                 RCPT TO:<w@b>\r\nDATA\r\nsmuggled\r\n.\r\nNOOP\r\n";
    for piece in 1..=wire.len() {
        let t = drive(config(), wire, piece);
        assert_eq!(
            t.sent,
            "220 mx.b.test ESMTP smtplab\r\n250 mx.b.test\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n\
             354 End data with <CR><LF>.<CR><LF>\r\n521 5.5.2 mx.b.test Error: bare <LF> received\r\n",
            "pieces of {piece}"
        );
        assert!(t.messages.is_empty());
        assert_eq!(t.closed, Some(Close::BareNewline(Bare::Lf)));
    }
}

#[test]
fn an_oversized_message_is_read_to_its_end_and_refused() {
    let body = "x".repeat(100);
    let wire = format!("HELO a\r\nMAIL FROM:<u@a>\r\nRCPT TO:<v@b>\r\nDATA\r\n{body}\r\n.\r\nNOOP\r\n");
    let t = drive(config(), wire.as_bytes(), 7);
    assert_eq!(
        t.sent,
        "220 mx.b.test ESMTP smtplab\r\n250 mx.b.test\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n\
         354 End data with <CR><LF>.<CR><LF>\r\n552 5.3.4 Error: message size exceeds fixed limit\r\n250 2.0.0 Ok\r\n"
    );
    assert!(t.messages.is_empty());
}

#[test]
fn bdat_chunks_in_any_pieces() {
    // RFC 3030 §4.2: chunks are exactly their size, whatever bytes they hold (a CRLF.CRLF inside
    // one ends nothing).
    let wire = b"EHLO a\r\nMAIL FROM:<u@a>\r\nRCPT TO:<v@b>\r\nBDAT 7\r\nab\r\n.\r\nBDAT 3 LAST\r\ncdeNOOP\r\n";
    for piece in 1..=wire.len() {
        let t = drive(config(), wire, piece);
        assert_eq!(
            t.sent,
            format!(
                "220 mx.b.test ESMTP smtplab\r\n{EHLO_PLAIN}250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 7 octets received\r\n\
                 250 2.0.0 Ok: queued as Q1\r\n250 2.0.0 Ok\r\n"
            ),
            "pieces of {piece}"
        );
        assert_eq!(t.messages.len(), 1);
        assert_eq!(t.messages[0].content, b"ab\r\n.\r\ncde");
    }
    // A chunk past the size limit is consumed whole and refused; the transaction is gone.
    let big =
        format!("HELO a\r\nMAIL FROM:<u@a>\r\nRCPT TO:<v@b>\r\nBDAT 65 LAST\r\n{}NOOP\r\nDATA\r\n", "y".repeat(65));
    let t = drive(config(), big.as_bytes(), 10);
    assert!(t.sent.ends_with(
        "250 2.1.5 Ok\r\n552 5.3.4 Error: message size exceeds fixed limit\r\n250 2.0.0 Ok\r\n\
         503 5.5.1 Error: need RCPT command\r\n"
    ));
    // DATA after BDAT in one transaction is refused (RFC 3030 §3).
    let t = drive(config(), b"HELO a\r\nMAIL FROM:<u@a>\r\nRCPT TO:<v@b>\r\nBDAT 1\r\nxDATA\r\n", 100);
    assert!(t.sent.ends_with("250 2.0.0 1 octets received\r\n503 5.5.1 Error: DATA after BDAT in one transaction\r\n"));
}

#[test]
fn a_flood_of_pipelined_chunks_is_answered_without_recursion() {
    // 200,000 empty BDAT chunks in one flight: each answered, none growing the stack.
    let wire = b"BDAT 0\r\n".repeat(200_000);
    let t = drive(config(), &wire, wire.len());
    assert_eq!(t.sent.matches("503 5.5.1 Error: need MAIL command\r\n").count(), 200_000);
}

#[test]
fn the_driver_ends_a_session_with_its_reply() {
    let mut s = ServerSession::new(config());
    assert_eq!(s.poll(), Event::Read(Wait::Command));
    s.feed(b"HELO a\r\nMAIL FROM:<u@a>\r\nRCPT TO:<v@b>\r\nDATA\r\npart");
    assert_eq!(s.poll(), Event::Recipient("v@b".into()));
    assert_eq!(s.poll(), Event::Waiting, "no verdict yet");
    s.recipient(Ok(()));
    assert_eq!(s.poll(), Event::Read(Wait::Content { transfer: 1 }));
    s.abort(Reply::new(421, "4.4.2 Error: timeout exceeded"));
    assert_eq!(s.poll(), Event::Close(Close::Aborted));
    assert_eq!(s.take_reply_codes().collect::<Vec<_>>(), vec![220, 250, 250, 250, 354, 421]);
    assert!(
        String::from_utf8_lossy(s.output())
            .ends_with("354 End data with <CR><LF>.<CR><LF>\r\n421 4.4.2 Error: timeout exceeded\r\n")
    );
    // An answer to a question not asked ends the session rather than act on it.
    let mut s = ServerSession::new(config());
    s.queued(Reply::new(250, "2.0.0 Ok"));
    assert_eq!(s.poll(), Event::Close(Close::Aborted));
}
