//! The subject and attachments of a message exactly as mail-parser 0.11's full parse
//! (`MessageParser::default().parse` then `attachments()`) gives them, for less CPU.
//!
//! This is mail-parser's `parse_` state machine (parsers/message.rs) kept step for step, built on
//! mail-parser's own public stream functions (header blocks, boundary seeking, quoted-printable),
//! with what the tap does not need left out: no text or HTML body is turned into a `String`
//! unless it is an attachment, no body lists are kept, and base64 and unencoded bodies go
//! through the faster scanners of [`crate::mime_body`], attachments hashed as they are decoded.
//! Anything it does not reproduce, it declines (`None`), and the caller does the full parse:
//! a nested `message/rfc822` (or digest part) that is not transfer-encoded, whose parts
//! mail-parser reads in line.

use std::sync::LazyLock;

use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::parsers::MessageStream;
use mail_parser::{ContentType, GetHeader, Header, HeaderName, HeaderValue, MessageParser};
use records::Attachment;
use sha2::{Digest, Sha256};

use crate::mime_body::{Base64, Sink, base64_part, plain_part};

/// mail-parser's header parsing, with the values the tap never reads skipped instead of parsed
/// (Received headers' tokenizer, addresses and message ids were a tenth of the reading's CPU).
///
/// Skipping must end each header where its own parser would, or the header blocks differ. Every
/// skipped parser ends at the first line break not followed by a blank, as the skipping does:
/// the Received tokenizer, addresses, ids, lists and unstructured text (their encoded words only
/// succeed across line breaks followed by blanks) and raw values. Not dates: a letter after a
/// `+` or `-` makes `parse_date` take the next two bytes whatever they are, a line break
/// included, running the Date header into the next one; so Date and Resent-Date keep their
/// parser. `header_blocks_end_where_the_default_parser_ends_them` checks it.
static HEADER_PARSER: LazyLock<MessageParser> = LazyLock::new(|| {
    MessageParser::new()
        .header_text(HeaderName::Subject)
        .header_text(HeaderName::ContentTransferEncoding)
        .header_content_type(HeaderName::ContentType)
        .header_content_type(HeaderName::ContentDisposition)
        .header_date(HeaderName::Date)
        .header_date(HeaderName::ResentDate)
        .default_header_ignore()
});

/// What a full parse would have given the tap.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Read {
    /// mail-parser's `subject()`: `None` when it has none (or found no header at all).
    pub subject: Option<String>,
    pub attachments: Vec<Attachment>,
}

/// mail-parser's classification of a part (its private `MimeType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MimeType {
    MultipartMixed,
    MultipartAlternative,
    MultipartRelated,
    MultipartDigest,
    TextPlain,
    TextHtml,
    TextOther,
    Inline,
    Message,
    Other,
}

/// mail-parser's `mime_type`: (is multipart, is inline, is text, type).
fn mime_type(content_type: Option<&ContentType<'_>>, parent: MimeType) -> (bool, bool, bool, MimeType) {
    let Some(ct) = content_type else {
        return if parent == MimeType::MultipartDigest {
            (false, false, false, MimeType::Message)
        } else {
            (false, true, true, MimeType::TextPlain)
        };
    };
    match ct.ctype() {
        "multipart" => (
            true,
            false,
            false,
            match ct.subtype() {
                Some("mixed") => MimeType::MultipartMixed,
                Some("alternative") => MimeType::MultipartAlternative,
                Some("related") => MimeType::MultipartRelated,
                Some("digest") => MimeType::MultipartDigest,
                _ => MimeType::Other,
            },
        ),
        "text" => match ct.subtype() {
            Some("plain") => (false, true, true, MimeType::TextPlain),
            Some("html") => (false, true, true, MimeType::TextHtml),
            _ => (false, false, true, MimeType::TextOther),
        },
        "image" | "audio" | "video" => (false, true, false, MimeType::Inline),
        "message" if matches!(ct.subtype(), Some("rfc822" | "global")) => (false, false, false, MimeType::Message),
        _ => (false, false, false, MimeType::Other),
    }
}

/// The part of mail-parser's `MessageParserState` that decides attachments.
struct State {
    mime_type: MimeType,
    boundary: Option<Vec<u8>>,
    in_alternative: bool,
    parts: usize,
    need_html_body: bool,
    need_text_body: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    None,
    Base64,
    QuotedPrintable,
}

/// Reads `raw` as mail-parser's full parse would, or `None` to ask for that parse.
pub(crate) fn read(raw: &[u8]) -> Option<Read> {
    let parser = &*HEADER_PARSER;
    let mut stream = MessageStream::new(raw);
    let mut state = State {
        mime_type: MimeType::Message,
        boundary: None,
        in_alternative: false,
        parts: 0,
        need_html_body: true,
        need_text_body: true,
    };
    let mut stack: Vec<State> = Vec::new();
    let mut headers: Vec<Header<'_>> = Vec::new();
    let mut out = Read::default();
    // Whether mail-parser would have pushed a part (its message is not empty).
    let mut any_part = false;

    'outer: loop {
        if !stream.parse_headers(parser, &mut headers) {
            break;
        }
        let offset_body = stream.offset();
        if !any_part {
            // The first part's headers are the message's (mail-parser's `parts[0]`).
            out.subject = subject(&headers);
            any_part = true;
        }
        state.parts += 1;
        let content_type = headers.header_value(&HeaderName::ContentType).and_then(|c| c.as_content_type());
        let (is_multipart, mut is_inline, mut is_text, mut mime_type) = mime_type(content_type, state.mime_type);

        if is_multipart && let Some(boundary) = content_type.and_then(|c| c.attribute("boundary")) {
            if stream.seek_next_part(boundary.as_bytes()) {
                let child = State {
                    in_alternative: state.in_alternative || mime_type == MimeType::MultipartAlternative,
                    mime_type,
                    boundary: Some(boundary.as_bytes().to_vec()),
                    parts: 0,
                    need_html_body: state.need_html_body,
                    need_text_body: state.need_text_body,
                };
                stack.push(std::mem::replace(&mut state, child));
                headers.clear();
                stream.skip_crlf();
                continue;
            }
            mime_type = MimeType::TextOther;
            is_text = true;
        }

        let encoding = match headers.header_value(&HeaderName::ContentTransferEncoding) {
            Some(HeaderValue::Text(e)) if e.eq_ignore_ascii_case("base64") => Encoding::Base64,
            Some(HeaderValue::Text(e)) if e.eq_ignore_ascii_case("quoted-printable") => Encoding::QuotedPrintable,
            _ => Encoding::None,
        };
        if mime_type == MimeType::Message && encoding == Encoding::None {
            // A message inside: mail-parser parses its parts in line, into a message of its own.
            return None;
        }
        let not_attachment_disposition = headers
            .header_value(&HeaderName::ContentDisposition)
            .is_none_or(|d| !d.as_content_type().is_some_and(|c| c.is_attachment()));

        // The single text/plain part of a message is never an attachment, whatever its body
        // (even an undecodable one, mail-parser's malformed/018 rule), and nothing follows it.
        if stack.is_empty() && state.parts == 1 && mime_type == MimeType::TextPlain && not_attachment_disposition {
            return Some(out);
        }

        let boundary = state.boundary.clone().unwrap_or_default();
        let rest = raw.get(offset_body..).unwrap_or_default();
        // Whether the part is an attachment if its body decodes, so the decoder knows whether
        // to keep what it decodes.
        let decision = Decision { is_inline, is_text, mime_type, not_attachment_disposition, content_type };
        let (wanted, _) = decision.attachment(&state, false);
        let mut sink = PartSink::new(wanted, is_text);
        let decoded = match encoding {
            Encoding::Base64 => match base64_part(rest, &boundary, &mut sink) {
                Base64::Done(n) => Some(n),
                Base64::Failed => None,
            },
            Encoding::None => plain_part(rest, &boundary).map(|(end, n)| {
                sink.bytes(rest.get(..end).unwrap_or_default());
                n
            }),
            Encoding::QuotedPrintable => {
                let (end, bytes) = stream.decode_quoted_printable_mime(&boundary);
                (end != usize::MAX).then(|| {
                    sink.bytes(&bytes);
                    // mail-parser's decoder moved the stream itself.
                    0
                })
            }
        };
        let problem = decoded.is_none();
        if let Some(n) = decoded {
            skip(&mut stream, n);
        } else {
            // mail-parser's recovery: the raw bytes up to the next boundary, read as text.
            if mime_type != MimeType::TextPlain {
                mime_type = MimeType::TextOther;
            }
            is_inline = false;
            is_text = true;
            let (end, found) = stream.seek_part_end(state.boundary.as_deref());
            sink = PartSink::new(true, true);
            sink.bytes(raw.get(offset_body..end).unwrap_or_default());
            if !found {
                state.boundary = None;
            }
        }
        let decision = Decision { is_inline, is_text, mime_type, not_attachment_disposition, content_type };
        let (attached, needs) = decision.attachment(&state, problem);
        (state.need_html_body, state.need_text_body) = needs;
        if attached {
            let disposition = headers.header_value(&HeaderName::ContentDisposition).and_then(|d| d.as_content_type());
            out.attachments.push(sink.finish(content_type, disposition)?);
        }
        headers.clear();

        if state.boundary.is_some() {
            loop {
                if state.mime_type == MimeType::Message {
                    // Only nested messages have this state with a boundary; declined above.
                    return None;
                }
                if !stream.is_multipart_end() {
                    break;
                }
                // End of this multipart: back to the parent, on to its next part if it has one.
                let Some(parent) = stack.pop() else { break 'outer };
                state = parent;
                match state.boundary.as_deref() {
                    Some(b) if stream.seek_next_part_offset(b).is_some() => continue,
                    _ => break 'outer,
                }
            }
        } else if stream.offset() >= raw.len() {
            break;
        }
    }
    // mail-parser's end: no part and no header is no message (its `None`); headers without a
    // body are a message with those headers.
    if !any_part {
        out.subject = subject(&headers);
    }
    Some(out)
}

/// mail-parser's `subject()` of a header block: the last Subject, if it is text.
fn subject(headers: &[Header<'_>]) -> Option<String> {
    headers.iter().rev().find(|h| h.name == HeaderName::Subject).and_then(|h| h.value.as_text()).map(str::to_string)
}

/// Moves the stream `n` bytes on (0: it is already where it should be).
fn skip(stream: &mut MessageStream<'_>, n: usize) {
    if n > 0 {
        stream.skip_bytes(n);
    }
}

/// The facts of a part that mail-parser's attachment rule reads.
struct Decision<'a, 'x> {
    is_inline: bool,
    is_text: bool,
    mime_type: MimeType,
    not_attachment_disposition: bool,
    content_type: Option<&'a ContentType<'x>>,
}

impl Decision<'_, '_> {
    /// Whether mail-parser lists the part as an attachment (`problem`: its body did not decode),
    /// with the state's (need_html_body, need_text_body) after it: the first inline text or
    /// HTML part inside an alternative satisfies the other kind.
    fn attachment(&self, state: &State, problem: bool) -> (bool, (bool, bool)) {
        let mut needs = (state.need_html_body, state.need_text_body);
        if self.mime_type == MimeType::Message {
            return (true, needs);
        }
        let is_inline = self.is_inline
            && self.not_attachment_disposition
            && (state.parts == 1
                || state.mime_type != MimeType::MultipartRelated
                    && (self.mime_type == MimeType::Inline
                        || self.content_type.is_none_or(|c| !c.has_attribute("name"))));
        let is_inline = is_inline
            || state.parts == 1
                && state.mime_type == MimeType::Message
                && self.mime_type == MimeType::TextPlain
                && problem;
        let (add_to_html, add_to_text) = if state.mime_type == MimeType::MultipartAlternative {
            match self.mime_type {
                MimeType::TextHtml => (true, false),
                MimeType::TextPlain => (false, true),
                _ => (false, false),
            }
        } else if is_inline {
            if state.in_alternative && (needs.0 || needs.1) {
                match self.mime_type {
                    MimeType::TextHtml => needs.1 = false,
                    MimeType::TextPlain => needs.0 = false,
                    _ => (),
                }
            }
            needs
        } else {
            (false, false)
        };
        if !self.is_text {
            return (true, needs);
        }
        let is_html = self.mime_type == MimeType::TextHtml;
        (!add_to_html && is_html || !add_to_text && !is_html, needs)
    }
}

/// Where a part's decoded body goes: nowhere (not an attachment), a hasher (a binary
/// attachment: mail-parser's contents are the bytes), or a buffer (a text attachment: its
/// contents are the text after charset decoding, which needs the whole body).
enum PartSink {
    Drop,
    Hash(Sha256, u64),
    Text(Vec<u8>),
}

impl PartSink {
    fn new(wanted: bool, is_text: bool) -> PartSink {
        match (wanted, is_text) {
            (false, _) => PartSink::Drop,
            (true, false) => PartSink::Hash(Sha256::new(), 0),
            (true, true) => PartSink::Text(Vec::new()),
        }
    }

    /// The attachment as the tap records it, from the part's headers. `None` if the body was
    /// not kept (cannot happen: the rule gave the same answer before decoding).
    fn finish(
        self,
        content_type: Option<&ContentType<'_>>,
        disposition: Option<&ContentType<'_>>,
    ) -> Option<Attachment> {
        let (size, digest) = match self {
            PartSink::Hash(h, n) => (n, h.finalize()),
            PartSink::Text(bytes) => {
                let charset =
                    content_type.and_then(|c| c.attribute("charset")).and_then(|c| charset_decoder(c.as_bytes()));
                match charset {
                    Some(decode) => {
                        let text = decode(&bytes);
                        (text.len() as u64, Sha256::digest(text.as_bytes()))
                    }
                    // What `String::from_utf8_lossy` gives, hashed as it goes instead of built:
                    // a body of invalid bytes would triple in size.
                    None => {
                        let (mut h, mut n) = (Sha256::new(), 0u64);
                        for chunk in bytes.utf8_chunks() {
                            h.update(chunk.valid().as_bytes());
                            n += chunk.valid().len() as u64;
                            if !chunk.invalid().is_empty() {
                                h.update("\u{FFFD}".as_bytes());
                                n += '\u{FFFD}'.len_utf8() as u64;
                            }
                        }
                        (n, h.finalize())
                    }
                }
            }
            PartSink::Drop => return None,
        };
        Some(Attachment {
            name: disposition
                .and_then(|d| d.attribute("filename"))
                .or_else(|| content_type.and_then(|c| c.attribute("name")))
                .map(str::to_string),
            content_type: content_type.map_or_else(|| "application/octet-stream".into(), type_name),
            size,
            sha256: hex::encode(digest),
        })
    }
}

impl Sink for PartSink {
    fn bytes(&mut self, decoded: &[u8]) {
        match self {
            PartSink::Drop => (),
            PartSink::Hash(h, n) => {
                h.update(decoded);
                *n += decoded.len() as u64;
            }
            PartSink::Text(v) => v.extend_from_slice(decoded),
        }
    }

    fn reset(&mut self) {
        match self {
            PartSink::Drop => (),
            PartSink::Hash(h, n) => {
                *h = Sha256::new();
                *n = 0;
            }
            PartSink::Text(v) => v.clear(),
        }
    }
}

/// A content type as the tap records it: `type/subtype`, or the type alone.
pub(crate) fn type_name(c: &ContentType<'_>) -> String {
    match c.subtype() {
        Some(sub) => format!("{}/{}", c.ctype(), sub),
        None => c.ctype().to_string(),
    }
}

#[cfg(test)]
mod tests;
