//! [`crate::tls::walk`] as bytes arrive: a TLS stream read record by record while it is
//! reassembled, so that the tap need not store it. Only a handshake record is held until it is
//! whole (for [`crate::tls::read_handshake`]); of the others, the header is enough.
//!
//! Fed the same bytes in any pieces, [`TlsWalker::summary`] is what `walk` gives on them all at
//! once (`tests::same_as_walk`).

use crate::tls::{TlsSummary, read_handshake};

const HEADER: usize = 5;
const HANDSHAKE: u8 = 22;

#[derive(Debug, Default)]
pub struct TlsWalker {
    summary: TlsSummary,
    /// The record being read: its header, then all of it for a handshake record.
    partial: Vec<u8>,
    /// Type and length of the record being read, once its header is whole.
    current: Option<(u8, usize)>,
    /// Body bytes of `current` seen so far.
    body_seen: usize,
    /// Bytes fed, and the end of the last whole record among them.
    fed: u64,
    done: u64,
    /// A header that is not TLS was met: what follows is counted, not read (`walk` stops there).
    garbage: bool,
    /// Nothing more is read or counted (the stream has a gap here: `walk` ends at gaps).
    frozen: bool,
}

impl TlsWalker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Ends the walk where the bytes stop being contiguous.
    pub fn freeze(&mut self) {
        self.frozen = true;
    }

    /// Memory held: the record being read, and the handshake message being reassembled.
    pub fn held_bytes(&self) -> usize {
        self.partial.capacity() + self.summary.held_bytes()
    }

    /// Nothing more will be fed (the stream stopped storing): reads nothing more and lets go of
    /// the record and the handshake message it was putting together. The summary is what it
    /// was, but for that unfinished message.
    pub fn release(&mut self) {
        self.frozen = true;
        self.partial = Vec::new();
        self.summary.handshake.release();
    }

    pub fn summary(&self) -> TlsSummary {
        let mut s = self.summary.clone();
        s.unparsed = self.fed - self.done;
        s
    }

    /// Reads the next bytes of the stream, captured at `ts` (the time given to the records
    /// they complete).
    pub fn feed(&mut self, mut input: &[u8], ts: f64) {
        if self.frozen {
            return;
        }
        while !input.is_empty() && !self.garbage {
            // What the header or the record body still needs, or all the input if less.
            let want = match self.current {
                None => HEADER - self.partial.len(),
                Some((_, len)) => len - self.body_seen,
            };
            let (take, rest) = input.split_at_checked(want).unwrap_or((input, &[]));
            match self.current {
                None => self.partial.extend_from_slice(take),
                Some((ctype, _)) => {
                    if ctype == HANDSHAKE {
                        self.partial.extend_from_slice(take);
                    }
                    self.body_seen += take.len();
                }
            }
            self.fed += take.len() as u64;
            input = rest;
            match self.current {
                None if self.partial.len() == HEADER => self.header(ts),
                Some((_, len)) if self.body_seen == len => self.record_done(ts),
                _ => {}
            }
        }
        // After garbage, bytes are counted only (as unparsed).
        self.fed += input.len() as u64;
    }

    /// The header in `partial` is whole: checks it as `walk` does.
    fn header(&mut self, ts: f64) {
        // Called with `HEADER` bytes in `partial`; fewer would be no record header either.
        let Some(&[ctype, major, _, len_hi, len_lo]) = self.partial.first_chunk::<HEADER>() else {
            self.summary.not_tls = self.summary.records == 0;
            self.garbage = true;
            return;
        };
        let len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
        if !(20..=24).contains(&ctype) || major != 3 {
            self.summary.not_tls = self.summary.records == 0;
            self.garbage = true;
            return;
        }
        self.current = Some((ctype, len));
        self.body_seen = 0;
        if ctype != HANDSHAKE {
            self.partial.clear();
        }
        if len == 0 {
            self.record_done(ts);
        }
    }

    fn record_done(&mut self, ts: f64) {
        let Some((ctype, len)) = self.current.take() else { return };
        self.summary.records += 1;
        match ctype {
            20 => self.summary.handshake.end(),
            21 => self.summary.alerts += 1,
            HANDSHAKE => read_handshake(&self.partial, &mut self.summary),
            23 => self.summary.app_record(ts, HEADER + len),
            _ => {}
        }
        self.partial.clear();
        if self.partial.capacity() > 64 << 10 {
            // A large certificate chain passed: do not hold its buffer for the session's life.
            self.partial = Vec::new();
        }
        self.done = self.fed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::walk;

    fn corpus() -> Vec<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/corpus/tls_walk");
        let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .expect("corpus")
            .map(|e| std::fs::read(e.expect("entry").path()).expect("file"))
            .collect();
        assert!(out.len() >= 4);
        // Joined, cut short, with garbage after, and empty.
        let all: Vec<u8> = out.iter().filter(|d| d.first() == Some(&22)).flatten().copied().collect();
        out.push(all.clone());
        out.push(all[..all.len() / 2].to_vec());
        let mut tail = all.clone();
        tail.extend_from_slice(&[23, 3, 3, 0, 0, 21, 3, 3, 0, 2, 1, 0, 23, 3, 3, 0, 4, 1, 2]);
        out.push(tail.clone());
        tail.extend_from_slice(b"QUIT\r\n");
        out.push(tail);
        out.push(Vec::new());
        out.push(b"250 ok\r\n".to_vec());
        out
    }

    #[test]
    fn same_as_walk() {
        for data in corpus() {
            let want = walk(&data);
            for piece in [1, 2, 3, 4, 5, 6, 7, 13, 64, 1000, usize::MAX] {
                let mut w = TlsWalker::new();
                for chunk in data.chunks(piece.min(data.len()).max(1)) {
                    w.feed(chunk, 0.0);
                }
                assert_eq!(w.summary(), want, "pieces of {piece}");
            }
        }
    }

    /// A handshake record after ChangeCipherSpec is encrypted (the Finished message): read as
    /// clear, it could pass for a ServerHello with another cipher. Neither walk reads it.
    #[test]
    fn nothing_after_change_cipher_spec_is_read_as_handshake() {
        let hello = |cipher: u16| {
            let mut body = vec![3, 3];
            body.extend_from_slice(&[7; 32]);
            body.push(0);
            body.extend_from_slice(&cipher.to_be_bytes());
            body.push(0);
            let mut rec = vec![22, 3, 3, 0, (body.len() + 4) as u8, 2, 0, 0, body.len() as u8];
            rec.extend(body);
            rec
        };
        let mut data = hello(0xc02c);
        data.extend_from_slice(&[20, 3, 3, 0, 1, 1]);
        data.extend(hello(0x002f));
        let want = walk(&data);
        assert_eq!(want.cipher.as_deref(), Some("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"));
        for piece in [1, 5, data.len()] {
            let mut w = TlsWalker::new();
            for chunk in data.chunks(piece) {
                w.feed(chunk, 0.0);
            }
            assert_eq!(w.summary(), want, "pieces of {piece}");
        }
    }

    /// A handshake message of the largest size read, in records of 16000 bytes, fed as TCP
    /// delivers it:
    /// the walker holds about the message and one record (not twice the message, as doubling a
    /// buffer would), lets it go once the message is read, and lets go at once when released.
    #[test]
    fn a_long_handshake_message_holds_about_its_size_and_no_longer() {
        use crate::tls::MAX_HANDSHAKE_MESSAGE;
        let len = MAX_HANDSHAKE_MESSAGE;
        let mut msg = vec![11];
        msg.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
        msg.resize(4 + len, 0x5a);
        let mut data = Vec::new();
        for chunk in msg.chunks(16_000) {
            data.extend_from_slice(&[22, 3, 3]);
            data.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            data.extend_from_slice(chunk);
        }
        let mut w = TlsWalker::new();
        let mut most = 0;
        let half = data.len() / 2;
        for chunk in data[..half].chunks(1448) {
            w.feed(chunk, 0.0);
            most = most.max(w.held_bytes());
        }
        let mut released = TlsWalker::new();
        released.feed(&data[..half], 0.0);
        assert!(released.held_bytes() > len / 2);
        released.release();
        assert_eq!(released.held_bytes(), 0);
        // All but the last byte: the message is almost whole, and waits.
        let last = data.len() - 1;
        for chunk in data[half..last].chunks(1448) {
            w.feed(chunk, 0.0);
            most = most.max(w.held_bytes());
        }
        assert!(most > len && most <= len + (64 << 10), "{most}");
        w.feed(&data[last..], 0.0);
        assert!(w.held_bytes() <= 64 << 10, "{}", w.held_bytes());
        let s = w.summary();
        assert_eq!(s, walk(&data));
        assert!(!s.handshake_too_long && s.unparsed == 0);
    }

    #[test]
    fn a_frozen_walk_is_the_walk_of_what_came_before() {
        for data in corpus() {
            for cut in [0, 1, 5, 6, data.len() / 3, data.len()] {
                let cut = cut.min(data.len());
                let mut w = TlsWalker::new();
                w.feed(&data[..cut], 0.0);
                w.freeze();
                w.feed(&data[cut..], 0.0);
                assert_eq!(w.summary(), walk(&data[..cut]));
            }
        }
    }
}
