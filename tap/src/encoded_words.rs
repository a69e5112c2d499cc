//! RFC 2047 encoded-words decoded as mail clients decode them, for the one case where
//! mail-parser 0.11 does not: a multi-byte character split across two adjacent encoded-words of
//! the same charset (Outlook and other mailers cut long GB2312, Big5 or Shift_JIS subjects at a
//! byte count, not at a character). mail-parser decodes each word on its own and shows the two
//! halves as replacement characters; Thunderbird (jsmime's `decodeRFC2047Words`) joins the bytes
//! of adjacent words in one charset first, and so does this.
//!
//! Checked parsing: any input gives a string, never a panic.

use mail_parser::decoders::charsets::map::charset_decoder;

/// The header value with its encoded-words decoded, adjacent words of one charset joined
/// before decoding; blanks between adjacent encoded-words are dropped (RFC 2047 §6.2), other
/// text is kept as it is.
pub fn decode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    // Bytes of the run of adjacent words being joined, with their charset.
    let mut run: Option<(String, Vec<u8>)> = None;
    let mut rest = value;
    while let Some(start) = rest.find("=?") {
        let Some((charset, bytes, len)) = word(&rest[start..]) else {
            flush(&mut out, &mut run);
            out.push_str(&rest[..start + 2]);
            rest = &rest[start + 2..];
            continue;
        };
        let between = &rest[..start];
        if !(run.is_some() && between.chars().all(|c| c == ' ' || c == '\t')) {
            flush(&mut out, &mut run);
            out.push_str(between);
        }
        match &mut run {
            Some((c, b)) if c.eq_ignore_ascii_case(&charset) => b.extend_from_slice(&bytes),
            _ => {
                flush(&mut out, &mut run);
                run = Some((charset, bytes));
            }
        }
        rest = &rest[start + len..];
    }
    flush(&mut out, &mut run);
    out.push_str(rest);
    out
}

/// Decodes the joined bytes of a run of words into `out`.
fn flush(out: &mut String, run: &mut Option<(String, Vec<u8>)>) {
    let Some((charset, bytes)) = run.take() else { return };
    match charset_decoder(charset.as_bytes()) {
        Some(decoder) => out.push_str(&decoder(&bytes)),
        // UTF-8 (mail-parser's map has no entry for it) and unknown labels.
        None => out.push_str(&String::from_utf8_lossy(&bytes)),
    }
}

/// One encoded-word at the start of `s` (`=?charset[*language]?B|Q?text?=`): its charset, its
/// bytes and its length in `s`.
fn word(s: &str) -> Option<(String, Vec<u8>, usize)> {
    let body = s.strip_prefix("=?")?;
    let (charset, body) = body.split_once('?')?;
    let (encoding, body) = body.split_once('?')?;
    let end = body.find("?=")?;
    let text = &body[..end];
    if charset.is_empty() || text.contains([' ', '\t']) {
        return None;
    }
    let charset = charset.split('*').next().unwrap_or(charset).to_string();
    let bytes = match encoding {
        "B" | "b" => base64_simd::forgiving_decode_to_vec(text.trim_end_matches('=').as_bytes()).ok()?,
        "Q" | "q" => q_decode(text.as_bytes()),
        _ => return None,
    };
    // `body` is a suffix of `s`: the word ends at its `?=`.
    Some((charset, bytes, s.len() - body.len() + end + 2))
}

/// The Q encoding: `_` is a space, `=XX` a byte; anything else (a `=` without two hex digits
/// too) as it is.
fn q_decode(text: &[u8]) -> Vec<u8> {
    let hex = |b: Option<&u8>| b.and_then(|&b| char::from(b).to_digit(16));
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        match b {
            b'_' => out.push(b' '),
            b'=' => match (hex(text.get(i + 1)), hex(text.get(i + 2))) {
                (Some(h), Some(l)) => {
                    // Two hex digits: at most 0xff.
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'='),
            },
            _ => out.push(b),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected strings are the text the bytes stand for in each charset (GB2312 C4E3 BAC3 A3AC
    /// CAC0 BDE7 for 你好，世界, Big5 A741 A66E for 你好; checked with Python's codecs).
    #[test]
    fn words_split_inside_a_character_are_joined_before_decoding() {
        let cases: &[(&str, &str)] = &[
            // C4E3 BA | C3 A3AC CAC0 BDE7: the second character cut in two.
            ("=?gb2312?B?xOO6?= =?gb2312?B?w6OsysC95w==?=", "你好，世界"),
            ("=?gb2312?B?xOO6?=\t =?GB2312?B?w6OsysC95w==?=", "你好，世界"),
            ("Re: =?big5?Q?=A7A=A6?= =?big5?Q?n?= !", "Re: 你好 !"),
            // Words of other charsets are not joined; text between words is kept.
            ("=?utf-8?Q?caf=C3=A9?= and =?iso-8859-1?Q?caf=E9?=", "café and café"),
            ("=?utf-8?B?w6k=?==?utf-8?B?w6k=?=", "éé"),
            ("=?gb2312*zh?Q?=C4=E3?=", "你"),
            ("plain text", "plain text"),
            ("=?broken", "=?broken"),
            ("a =?x?Z?y?= b", "a =?x?Z?y?= b"),
            ("=?utf-8?Q?a_b?=", "a b"),
            ("=?utf-8?Q?=ZZ=4?=", "=ZZ=4"),
        ];
        for (raw, want) in cases {
            assert_eq!(decode(raw), *want, "{raw}");
        }
    }
}
