//! SMTP commands (RFC 5321 §4.1, RFC 3207, RFC 3030, RFC 4954), parsed leniently.
//!
//! Lenient because the same parser reads what passes on the wire for the tap: a relay rejects a
//! malformed command with a reply, but an eavesdropper still wants whatever it says.

/// A reverse- or forward-path: the address between angle brackets, without them. The null
/// reverse-path `<>` is the empty string.
pub type Path = String;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    Mail {
        from: Path,
        params: Vec<String>,
    },
    Rcpt {
        to: Path,
        params: Vec<String>,
    },
    Data,
    /// RFC 3030 BDAT: the chunk, or why its argument is not `chunk-size [LAST]`.
    Bdat(Result<BdatChunk, BdatError>),
    Rset,
    Noop,
    Quit,
    StartTls,
    Vrfy(String),
    Expn(String),
    Help,
    /// RFC 4954: the mechanism and the optional initial response (credentials: callers must not
    /// log it).
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
    /// A verb this parser does not know, or a known verb with arguments it cannot make sense of.
    Unknown {
        verb: String,
        line: String,
    },
}

/// A BDAT chunk's announced size, and whether it ends the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BdatChunk {
    pub size: u64,
    pub last: bool,
}

/// Why a BDAT argument is not `chunk-size [LAST]` (RFC 3030 §2), in Zeek's words (its
/// `smtp_invalid_bdat_command` weird carries them). The relay refuses such a command and ends the
/// session (the chunk's end is lost); the tap notes it and reads on as the server does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BdatError {
    #[error("BDAT argument bad length")]
    BadLength,
    #[error("BDAT not followed by a valid chunk-size")]
    NoSize,
    #[error("BDAT chunk-size not valid")]
    SizeNotValid,
    #[error("BDAT chunk-size too large")]
    TooLarge,
    #[error("BDAT chunk-size followed by junk")]
    Junk,
}

/// Parses BDAT's argument (what follows the verb and its blanks, trailing blanks removed) as
/// Zeek does: digits, then nothing or exactly ` LAST` (any case).
pub fn parse_bdat_argument(arg: &[u8]) -> Result<BdatChunk, BdatError> {
    // "18446744073709551615 LAST": the longest valid argument.
    if arg.is_empty() || arg.len() > 25 {
        return Err(BdatError::BadLength);
    }
    let digits = arg.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return Err(BdatError::NoSize);
    }
    let (num, tail) = arg.split_at_checked(digits).ok_or(BdatError::NoSize)?;
    if !matches!(tail.first(), None | Some(b' ')) {
        return Err(BdatError::SizeNotValid);
    }
    let size = num
        .iter()
        .try_fold(0u64, |acc, b| acc.checked_mul(10)?.checked_add(u64::from(b - b'0')))
        .ok_or(BdatError::TooLarge)?;
    match tail {
        [] => Ok(BdatChunk { size, last: false }),
        t if t.eq_ignore_ascii_case(b" LAST") => Ok(BdatChunk { size, last: true }),
        _ => Err(BdatError::Junk),
    }
}

impl Command {
    /// Parses one command line (without CRLF). Never fails: what cannot be understood is
    /// `Unknown`, so the caller decides between a 500 reply and a logged oddity.
    pub fn parse(line: &[u8]) -> Command {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches([' ', '\t']);
        let (verb, rest) = match text.find([' ', '\t']) {
            Some(i) => (&text[..i], text[i..].trim_start()),
            None => (text, ""),
        };
        let unknown = || Command::Unknown { verb: verb.to_ascii_uppercase(), line: text.to_string() };
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" => Command::Ehlo(rest.to_string()),
            "HELO" => Command::Helo(rest.to_string()),
            "MAIL" => match strip_prefix_ci(rest, "FROM:") {
                Some(arg) => {
                    let (from, params) = split_path(arg);
                    Command::Mail { from, params }
                }
                None => unknown(),
            },
            "RCPT" => match strip_prefix_ci(rest, "TO:") {
                Some(arg) => {
                    let (to, params) = split_path(arg);
                    Command::Rcpt { to, params }
                }
                None => unknown(),
            },
            "DATA" => Command::Data,
            "BDAT" => Command::Bdat(parse_bdat_argument(rest.as_bytes())),
            "RSET" => Command::Rset,
            "NOOP" => Command::Noop,
            "QUIT" => Command::Quit,
            "STARTTLS" => Command::StartTls,
            "VRFY" => Command::Vrfy(rest.to_string()),
            "EXPN" => Command::Expn(rest.to_string()),
            "HELP" => Command::Help,
            "AUTH" => {
                let mut words = rest.split_ascii_whitespace();
                match words.next() {
                    Some(mech) => Command::Auth {
                        mechanism: mech.to_ascii_uppercase(),
                        initial: words.next().map(str::to_string),
                    },
                    None => unknown(),
                }
            }
            _ => unknown(),
        }
    }

    /// The verb as it goes on the wire, upper case.
    pub fn verb(&self) -> &str {
        match self {
            Command::Ehlo(_) => "EHLO",
            Command::Helo(_) => "HELO",
            Command::Mail { .. } => "MAIL",
            Command::Rcpt { .. } => "RCPT",
            Command::Data => "DATA",
            Command::Bdat(_) => "BDAT",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
            Command::StartTls => "STARTTLS",
            Command::Vrfy(_) => "VRFY",
            Command::Expn(_) => "EXPN",
            Command::Help => "HELP",
            Command::Auth { .. } => "AUTH",
            Command::Unknown { verb, .. } => verb,
        }
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| s[prefix.len()..].trim_start())
}

/// Splits `<path> PARAM=x PARAM2` into the path (brackets removed) and the parameters. Tolerates
/// a missing bracket pair (`MAIL FROM:user@host`), which real clients send and Zeek logs as is.
fn split_path(arg: &str) -> (Path, Vec<String>) {
    let arg = arg.trim();
    let (path, rest) = if let Some(inner) = arg.strip_prefix('<') {
        match inner.find('>') {
            Some(end) => (inner[..end].to_string(), &inner[end + 1..]),
            None => (inner.to_string(), ""),
        }
    } else {
        match arg.find(char::is_whitespace) {
            Some(i) => (arg[..i].to_string(), &arg[i..]),
            None => (arg.to_string(), ""),
        }
    };
    (path, rest.split_ascii_whitespace().map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bdat_arguments_as_zeek_reads_them() {
        use BdatError::*;
        let ok = |size, last| Ok(BdatChunk { size, last });
        type Case<'a> = (&'a [u8], Result<BdatChunk, BdatError>);
        let cases: &[Case] = &[
            (b"86 LAST", ok(86, true)),
            (b"86 last", ok(86, true)),
            (b"86", ok(86, false)),
            (b"0 LAST", ok(0, true)),
            (b"18446744073709551615 LAST", ok(u64::MAX, true)),
            (b"15555555557777777777", ok(15_555_555_557_777_777_777, false)),
            (b"", Err(BadLength)),
            (b"184467440737095516150 LAST", Err(BadLength)),
            (b"184467440737095516150", Err(TooLarge)),
            (b"SCRAMBLE", Err(NoSize)),
            (b"-1 LAST", Err(NoSize)),
            (b"86LAST", Err(SizeNotValid)),
            (b"1234 SCRAMBLE", Err(Junk)),
            (b"86 LASTX", Err(Junk)),
            (b"86  LAST", Err(Junk)),
        ];
        for (arg, want) in cases {
            assert_eq!(&parse_bdat_argument(arg), want, "{}", String::from_utf8_lossy(arg));
        }
        assert_eq!(Junk.to_string(), "BDAT chunk-size followed by junk");
    }

    #[test]
    fn table() {
        let cases: &[(&[u8], Command)] = &[
            (b"EHLO mx.example", Command::Ehlo("mx.example".into())),
            (b"ehlo  x ", Command::Ehlo("x".into())),
            (
                b"MAIL FROM:<a@b.c> SIZE=100 BODY=8BITMIME",
                Command::Mail { from: "a@b.c".into(), params: vec!["SIZE=100".into(), "BODY=8BITMIME".into()] },
            ),
            (b"mail from: <>", Command::Mail { from: "".into(), params: vec![] }),
            (b"MAIL FROM:sender@localhost", Command::Mail { from: "sender@localhost".into(), params: vec![] }),
            (b"RCPT TO:<x@y>", Command::Rcpt { to: "x@y".into(), params: vec![] }),
            (b"BDAT 86 LAST", Command::Bdat(Ok(BdatChunk { size: 86, last: true }))),
            (b"bdat  86  ", Command::Bdat(Ok(BdatChunk { size: 86, last: false }))),
            (b"BDAT 99999999999999999999 LAST", Command::Bdat(Err(BdatError::TooLarge))),
            (b"BDAT -1", Command::Bdat(Err(BdatError::NoSize))),
            (b"BDAT 10 junk", Command::Bdat(Err(BdatError::Junk))),
            (b"STARTTLS", Command::StartTls),
            (b"AUTH LOGIN", Command::Auth { mechanism: "LOGIN".into(), initial: None }),
            (b"MAIL TO:<x>", Command::Unknown { verb: "MAIL".into(), line: "MAIL TO:<x>".into() }),
            (b"\xff\xfe", Command::Unknown { verb: "\u{fffd}\u{fffd}".into(), line: "\u{fffd}\u{fffd}".into() }),
            (b"", Command::Unknown { verb: "".into(), line: "".into() }),
        ];
        for (line, want) in cases {
            assert_eq!(&Command::parse(line), want, "{}", String::from_utf8_lossy(line));
        }
    }
}
