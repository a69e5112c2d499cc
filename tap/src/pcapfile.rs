//! Reading capture files: classic pcap (both byte orders, micro- and nanosecond timestamps) and
//! pcapng (sections of either byte order, any number of interfaces with their own link type and
//! timestamp resolution; Enhanced, Simple and obsolete Packet Blocks).
//!
//! Written here rather than through libpcap so that a corrupt file is reported with the byte
//! offset of the record or block that is wrong, whatever the format, and so that the reader can
//! be fed bytes from memory (tests, fuzzing). Nothing here panics on any input; memory is bounded
//! by the record and block length limits.

use std::io::Read;

use crate::read_ahead::ReadAhead;

/// Largest block or record accepted, bytes (a corrupt length field must not make us allocate
/// gigabytes).
const MAX_BLOCK: u32 = 16 << 20;
/// libpcap's own bound for a classic record when the header's snaplen is smaller.
const MIN_RECORD_LIMIT: u32 = 262_144;

/// One captured frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet<'a> {
    /// Seconds since the Unix epoch.
    pub ts: f64,
    /// libpcap DLT/LINKTYPE number of the interface it was captured on.
    pub linktype: u32,
    pub data: &'a [u8],
    /// Length of the frame on the wire (`data` may be cut to the snaplen).
    pub orig_len: u32,
}

/// Why the file could not be read further.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Not a pcap or pcapng file at all.
    #[error("not a pcap or pcapng file ({0})")]
    NotCapture(NotCapture),
    /// The record or block starting at `offset` is malformed or cut short.
    #[error("corrupt or truncated capture at byte offset {offset} ({kind})")]
    Corrupt { offset: u64, kind: CorruptKind },
    /// Reading failed where the record or block at `offset` would start: the file may go on,
    /// but what follows is unknown (it must not pass for the end of the file).
    #[error("the capture could not be read from byte offset {offset} on: {source}")]
    Read { offset: u64, source: std::io::Error },
    /// The thread that reads a file ahead could not be started.
    #[error("cannot start reading: {0}")]
    Start(#[source] std::io::Error),
}

/// Why the input is not a capture at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotCapture {
    /// Fewer bytes than a magic number.
    #[error("only {len} bytes")]
    TooShort { len: usize },
    /// The first four bytes are neither a classic pcap magic nor a pcapng section header.
    #[error("unknown magic {}", hex::encode(.magic))]
    Magic { magic: [u8; 4] },
}

/// What is wrong with the record or block at a corrupt capture's offset: the input's own
/// defect, said with the numbers that show it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorruptKind {
    /// A classic file header shorter than its 24 bytes.
    #[error("file header cut short ({got} of 24 bytes)")]
    FileHeaderCut { got: usize },
    #[error("record header cut short ({got} of 16 bytes)")]
    RecordHeaderCut { got: usize },
    /// A classic record longer than `limit`: the file's snapshot length, kept between
    /// libpcap's 262144 bytes and the reader's 16 MiB.
    #[error(
        "record length {caplen} is larger than the {limit} bytes allowed (the file's snapshot length {snaplen}, \
         kept between {MIN_RECORD_LIMIT} and {MAX_BLOCK})"
    )]
    RecordTooLong { caplen: u32, limit: u32, snaplen: u32 },
    #[error("record cut short ({got} of {caplen} bytes)")]
    RecordCut { got: usize, caplen: u32 },
    #[error("block header cut short ({got} of 8 bytes)")]
    BlockHeaderCut { got: usize },
    #[error("section header cut short ({got} of 12 bytes)")]
    SectionHeaderCut { got: usize },
    #[error("section header with an unknown byte-order magic {}", hex::encode(.magic))]
    ByteOrderMagic { magic: [u8; 4] },
    /// Under 12, not a multiple of 4, or over 16 MiB.
    #[error("block length {total} is not valid (at least 12, a multiple of 4, at most {MAX_BLOCK})")]
    BlockLength { total: u32 },
    #[error("block length {total} is too short for its type")]
    BlockTooShort { total: u32 },
    #[error("block cut short ({got} of {total} bytes)")]
    BlockCut { got: usize, total: u32 },
    /// The copy of the length at the block's end (`None`: missing) is not the one at its start.
    #[error("block lengths at its start and end differ ({start} and {})", show_length(.end))]
    BlockLengthsDiffer { start: u32, end: Option<u32> },
    #[error("packet block too short for its fields")]
    PacketBlockTooShort,
    #[error("packet block names interface {iface}, which was not described")]
    UnknownInterface { iface: u32 },
    #[error("captured length {caplen} runs past the end of its block")]
    CaptureLengthPastBlock { caplen: u32 },
    #[error("simple packet block before any interface description")]
    SimplePacketWithoutInterface,
}

fn show_length(end: &Option<u32>) -> String {
    end.map_or_else(|| "none".into(), |n| n.to_string())
}

#[derive(Debug, Clone, Copy)]
struct Iface {
    linktype: u32,
    snaplen: u32,
    /// Timestamp units per second.
    units: f64,
    /// Seconds added to every timestamp (if_tsoffset).
    offset: i64,
}

#[derive(Debug)]
enum Kind {
    Classic { big_endian: bool, nanos: bool, linktype: u32, snaplen: u32 },
    Ng { big_endian: bool, ifaces: Vec<Iface> },
}

pub struct Reader<R: Read> {
    input: Input<R>,
    /// Bytes consumed so far: the offset of the next record or block.
    offset: u64,
    kind: Kind,
    buf: Vec<u8>,
}

fn u16_at(b: &[u8], at: usize, be: bool) -> Option<u16> {
    let x: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
    Some(if be { u16::from_be_bytes(x) } else { u16::from_le_bytes(x) })
}

fn u32_at(b: &[u8], at: usize, be: bool) -> Option<u32> {
    let x: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(if be { u32::from_be_bytes(x) } else { u32::from_le_bytes(x) })
}

fn u64_at(b: &[u8], at: usize, be: bool) -> Option<u64> {
    let x: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
    Some(if be { u64::from_be_bytes(x) } else { u64::from_le_bytes(x) })
}

/// The input with its own buffer, so that a classic record is handed out where it was read
/// (one copy from the kernel, none after).
struct Input<R: Read> {
    inner: R,
    /// A file read on another thread, in place of `inner` and `buf`.
    ahead: Option<ReadAhead>,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    eof: bool,
    /// Why reading stopped before the end of the input, if a read failed.
    error: Option<std::io::Error>,
    /// The last read filled the buffer: the input is large, a larger buffer pays.
    was_full: bool,
}

/// Bytes asked per read of a stream or of bytes in memory (files are read ahead on their own
/// thread, [`crate::read_ahead::CHUNK`] at a time): small enough that the buffer stays in the
/// CPU's L2 cache, where the record parser and the copy of each payload into its flow find the
/// bytes the kernel just wrote (10% less CPU than 2 MiB reads on the 1 GB benchmark capture).
const READ_SIZE: usize = 512 << 10;

impl<R: Read> Input<R> {
    fn new(inner: R) -> Self {
        Self { inner, ahead: None, buf: Vec::new(), pos: 0, end: 0, eof: false, error: None, was_full: false }
    }

    /// Makes `n` bytes available if the input has them; returns how many are.
    fn fill(&mut self, n: usize) -> usize {
        if self.end - self.pos >= n || self.eof {
            return n.min(self.end - self.pos);
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        // Start small (captures in memory are often tiny); double, up to READ_SIZE, while reads
        // fill the whole buffer.
        let size = match self.buf.len() {
            0 => 16 << 10,
            len if self.was_full && len < READ_SIZE => len * 2,
            len => len,
        };
        if self.buf.len() < size.max(n) {
            self.buf.resize(size.max(n), 0);
        }
        while self.end < n && !self.eof {
            // `end < n <= buf.len()`: there is room to read into.
            let Some(room) = self.buf.get_mut(self.end..) else { break };
            match self.inner.read(room) {
                Ok(0) => self.eof = true,
                Ok(k) => self.end += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.eof = true;
                    self.error = Some(e);
                }
            }
        }
        self.was_full = self.end == self.buf.len();
        n.min(self.end - self.pos)
    }

    /// The next `n` bytes, or how many were there before the end (all consumed then).
    fn take(&mut self, n: usize) -> Result<&[u8], usize> {
        if self.ahead.is_some() {
            // (Tested first, borrowed inside: a borrow returned from an `if let` would be held
            // on the other path too.)
            return self.ahead.as_mut().map_or(Err(0), |ahead| ahead.take(n));
        }
        let have = self.fill(n);
        if have < n {
            self.pos = self.end;
            return Err(have);
        }
        let at = self.pos;
        self.pos += n;
        // `fill` gave `n` bytes from `pos`.
        self.buf.get(at..at + n).ok_or(have)
    }

    /// The error that ended the input early, if one did; taken, so asked once.
    fn take_read_error(&mut self) -> Option<std::io::Error> {
        match &mut self.ahead {
            Some(ahead) => ahead.take_error(),
            None => self.error.take(),
        }
    }

    /// Reads exactly `out.len()` bytes, or tells how many were there before the end.
    fn read_full(&mut self, out: &mut [u8]) -> Result<(), usize> {
        let bytes = self.take(out.len())?;
        out.copy_from_slice(bytes);
        Ok(())
    }
}

fn corrupt(offset: u64, kind: CorruptKind) -> ReadError {
    ReadError::Corrupt { offset, kind }
}

/// A packet read from a block: time, link type, where its bytes are in `buf`, wire length.
type BlockPacket = (f64, u32, std::ops::Range<usize>, u32);

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 1;
const OPB: u32 = 2;
const SPB: u32 = 3;
const EPB: u32 = 6;

impl<R: Read> Reader<R> {
    /// Reads the file header (classic) or the first Section Header Block (pcapng).
    pub fn new(input: R) -> Result<Self, ReadError> {
        Self::start(Input::new(input))
    }

    fn start(mut input: Input<R>) -> Result<Self, ReadError> {
        let mut magic = [0u8; 4];
        input.read_full(&mut magic).map_err(|len| ReadError::NotCapture(NotCapture::TooShort { len }))?;
        let classic = match magic {
            [0xd4, 0xc3, 0xb2, 0xa1] => Some((false, false)),
            [0xa1, 0xb2, 0xc3, 0xd4] => Some((true, false)),
            [0x4d, 0x3c, 0xb2, 0xa1] => Some((false, true)),
            [0xa1, 0xb2, 0x3c, 0x4d] => Some((true, true)),
            _ => None,
        };
        if let Some((big_endian, nanos)) = classic {
            let mut rest = [0u8; 20];
            input.read_full(&mut rest).map_err(|n| corrupt(0, CorruptKind::FileHeaderCut { got: 4 + n }))?;
            let snaplen = u32_at(&rest, 12, big_endian).unwrap_or(0);
            // The link type is the low 16 bits (the upper ones carry FCS information).
            let linktype = u32_at(&rest, 16, big_endian).unwrap_or(0) & 0xffff;
            return Ok(Self {
                input,
                offset: 24,
                kind: Kind::Classic { big_endian, nanos, linktype, snaplen },
                buf: Vec::new(),
            });
        }
        if u32::from_le_bytes(magic) != SHB {
            return Err(ReadError::NotCapture(NotCapture::Magic { magic }));
        }
        let mut r =
            Self { input, offset: 0, kind: Kind::Ng { big_endian: false, ifaces: Vec::new() }, buf: Vec::new() };
        r.read_block(Some(magic))?;
        Ok(r)
    }

    /// The link type of the file (classic) or of the first interface described so far (pcapng).
    pub fn linktype(&self) -> Option<u32> {
        match &self.kind {
            Kind::Classic { linktype, .. } => Some(*linktype),
            Kind::Ng { ifaces, .. } => ifaces.first().map(|i| i.linktype),
        }
    }

    /// Bytes read so far: the offset of the next record or block.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The input ended where a record or block would start at `offset`: the end of the file, or
    /// a read error, which must not pass for one (the records after it would be lost unsaid).
    fn clean_end<T>(&mut self, offset: u64) -> Result<Option<T>, ReadError> {
        match self.input.take_read_error() {
            Some(source) => Err(ReadError::Read { offset, source }),
            None => Ok(None),
        }
    }

    /// The next packet, `None` at a clean end of file.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, ReadError> {
        match self.kind {
            Kind::Classic { big_endian, nanos, linktype, snaplen } => {
                let start = self.offset;
                let mut head = [0u8; 16];
                match self.input.read_full(&mut head) {
                    Ok(()) => {}
                    Err(0) => return self.clean_end(start),
                    Err(got) => return Err(corrupt(start, CorruptKind::RecordHeaderCut { got })),
                }
                let be = big_endian;
                let sec = u32_at(&head, 0, be).unwrap_or(0);
                let frac = u32_at(&head, 4, be).unwrap_or(0);
                let caplen = u32_at(&head, 8, be).unwrap_or(0);
                let orig_len = u32_at(&head, 12, be).unwrap_or(0);
                let limit = snaplen.clamp(MIN_RECORD_LIMIT, MAX_BLOCK);
                if caplen > limit {
                    return Err(corrupt(start, CorruptKind::RecordTooLong { caplen, limit, snaplen }));
                }
                let ts = f64::from(sec) + f64::from(frac) / if nanos { 1e9 } else { 1e6 };
                match self.input.take(caplen as usize) {
                    Ok(data) => {
                        self.offset += 16 + u64::from(caplen);
                        Ok(Some(Packet { ts, linktype, data, orig_len }))
                    }
                    Err(got) => Err(corrupt(start, CorruptKind::RecordCut { got, caplen })),
                }
            }
            Kind::Ng { .. } => loop {
                let Some(found) = self.read_block(None)? else { return Ok(None) };
                if let Some((ts, linktype, range, orig_len)) = found {
                    let data = self.buf.get(range).unwrap_or(&[]);
                    return Ok(Some(Packet { ts, linktype, data, orig_len }));
                }
            },
        }
    }

    /// Reads one pcapng block into `buf`. `None` at a clean end of file; `Some(None)` for a block
    /// that is not a packet; `Some(Some(..))` for a packet whose bytes are `buf[range]`.
    fn read_block(&mut self, magic: Option<[u8; 4]>) -> Result<Option<Option<BlockPacket>>, ReadError> {
        let start = self.offset;
        let mut head = [0u8; 8];
        let have = match magic {
            Some(m) => {
                head[..4].copy_from_slice(&m);
                4
            }
            None => 0,
        };
        match self.input.read_full(head.get_mut(have..).unwrap_or_default()) {
            Ok(()) => {}
            Err(0) if have == 0 => return self.clean_end(start),
            Err(n) => return Err(corrupt(start, CorruptKind::BlockHeaderCut { got: have + n })),
        }
        let Kind::Ng { big_endian, .. } = self.kind else { return Ok(Some(None)) };
        let raw_type = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let mut be = big_endian;
        if raw_type == SHB {
            // The byte order of a section is given by its byte-order magic, after the length.
            let mut bom = [0u8; 4];
            if let Err(n) = self.input.read_full(&mut bom) {
                return Err(corrupt(start, CorruptKind::SectionHeaderCut { got: 8 + n }));
            }
            be = match bom {
                [0x1a, 0x2b, 0x3c, 0x4d] => true,
                [0x4d, 0x3c, 0x2b, 0x1a] => false,
                magic => return Err(corrupt(start, CorruptKind::ByteOrderMagic { magic })),
            };
            self.buf.clear();
            self.buf.extend_from_slice(&bom);
        } else {
            self.buf.clear();
        }
        let btype = u32_at(&head, 0, be).unwrap_or(0);
        let total = u32_at(&head, 4, be).unwrap_or(0);
        if total < 12 || !total.is_multiple_of(4) || total > MAX_BLOCK {
            return Err(corrupt(start, CorruptKind::BlockLength { total }));
        }
        let body_len = total as usize - 12;
        let already = self.buf.len();
        if already > body_len + 4 {
            return Err(corrupt(start, CorruptKind::BlockTooShort { total }));
        }
        self.buf.resize(body_len + 4, 0);
        // `already <= body_len + 4`, the buffer's length, checked above.
        let Some(rest) = self.buf.get_mut(already..) else {
            return Err(corrupt(start, CorruptKind::BlockTooShort { total }));
        };
        if let Err(n) = self.input.read_full(rest) {
            return Err(corrupt(start, CorruptKind::BlockCut { got: 8 + already + n, total }));
        }
        let end = u32_at(&self.buf, body_len, be);
        if end != Some(total) {
            return Err(corrupt(start, CorruptKind::BlockLengthsDiffer { start: total, end }));
        }
        self.offset += u64::from(total);
        let Some(body) = self.buf.get(..body_len) else {
            return Err(corrupt(start, CorruptKind::BlockLength { total }));
        };
        let Kind::Ng { big_endian, ifaces } = &mut self.kind else { return Ok(Some(None)) };
        match btype {
            SHB => {
                *big_endian = be;
                ifaces.clear();
                Ok(Some(None))
            }
            IDB => {
                let linktype = u32::from(u16_at(body, 0, be).unwrap_or(0));
                let snaplen = u32_at(body, 4, be).unwrap_or(0);
                let (units, offset) = iface_options(body.get(8..).unwrap_or(&[]), be);
                ifaces.push(Iface { linktype, snaplen, units, offset });
                Ok(Some(None))
            }
            EPB | OPB => {
                let (iface, hi, lo, caplen, orig_len, data_at) = if btype == EPB {
                    (
                        u32_at(body, 0, be),
                        u32_at(body, 4, be),
                        u32_at(body, 8, be),
                        u32_at(body, 12, be),
                        u32_at(body, 16, be),
                        20,
                    )
                } else {
                    (
                        u16_at(body, 0, be).map(u32::from),
                        u32_at(body, 4, be),
                        u32_at(body, 8, be),
                        u32_at(body, 12, be),
                        u32_at(body, 16, be),
                        20,
                    )
                };
                let (Some(iface), Some(hi), Some(lo), Some(caplen), Some(orig_len)) = (iface, hi, lo, caplen, orig_len)
                else {
                    return Err(corrupt(start, CorruptKind::PacketBlockTooShort));
                };
                let Some(info) = ifaces.get(iface as usize).copied() else {
                    return Err(corrupt(start, CorruptKind::UnknownInterface { iface }));
                };
                let end = data_at + caplen as usize;
                if end > body_len {
                    return Err(corrupt(start, CorruptKind::CaptureLengthPastBlock { caplen }));
                }
                let units = (u64::from(hi) << 32) | u64::from(lo);
                let ts = units as f64 / info.units + info.offset as f64;
                Ok(Some(Some((ts, info.linktype, data_at..end, orig_len))))
            }
            SPB => {
                let Some(info) = ifaces.first().copied() else {
                    return Err(corrupt(start, CorruptKind::SimplePacketWithoutInterface));
                };
                let orig_len = u32_at(body, 0, be).unwrap_or(0);
                let mut caplen = (body_len.saturating_sub(4)).min(orig_len as usize);
                if info.snaplen > 0 {
                    caplen = caplen.min(info.snaplen as usize);
                }
                Ok(Some(Some((0.0, info.linktype, 4..4 + caplen, orig_len))))
            }
            _ => Ok(Some(None)),
        }
    }
}

impl Reader<std::io::Empty> {
    /// [`Reader::new`] for a capture file, read on a thread of its own ([`crate::read_ahead`]).
    pub fn from_file(file: std::fs::File) -> Result<Self, ReadError> {
        let ahead = ReadAhead::start(file, crate::read_ahead::CHUNK).map_err(ReadError::Start)?;
        Self::start(Input { ahead: Some(ahead), ..Input::new(std::io::empty()) })
    }
}

/// if_tsresol (9) and if_tsoffset (14) of an Interface Description Block.
fn iface_options(mut opts: &[u8], be: bool) -> (f64, i64) {
    let (mut units, mut offset) = (1e6, 0i64);
    while let (Some(code), Some(len)) = (u16_at(opts, 0, be), u16_at(opts, 2, be)) {
        let len = len as usize;
        let Some(value) = opts.get(4..4 + len) else { break };
        match code {
            0 => break,
            9 => {
                if let Some(&r) = value.first() {
                    let exp = i32::from(r & 0x7f).min(60);
                    units = if r & 0x80 == 0 { 10f64.powi(exp) } else { 2f64.powi(exp) };
                }
            }
            14 => {
                if let Some(v) = u64_at(value, 0, be) {
                    offset = v as i64;
                }
            }
            _ => {}
        }
        let padded = (len + 3) & !3;
        opts = opts.get(4 + padded..).unwrap_or(&[]);
    }
    (units, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classic(records: &[(&[u8], u32)]) -> Vec<u8> {
        let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        f.extend_from_slice(&65535u32.to_le_bytes());
        f.extend_from_slice(&1u32.to_le_bytes());
        for (data, caplen) in records {
            f.extend_from_slice(&7u32.to_le_bytes());
            f.extend_from_slice(&500_000u32.to_le_bytes());
            f.extend_from_slice(&caplen.to_le_bytes());
            f.extend_from_slice(&(data.len() as u32).to_le_bytes());
            f.extend_from_slice(data);
        }
        f
    }

    #[test]
    fn classic_records_and_a_bad_length() {
        let f = classic(&[(b"abc", 3), (b"xyz", 0x7fff_ffff)]);
        let mut r = Reader::new(&f[..]).expect("header");
        let p = r.next_packet().expect("ok").expect("one");
        assert_eq!((p.ts, p.linktype, p.data), (7.5, 1, &b"abc"[..]));
        match r.next_packet() {
            Err(e @ ReadError::Corrupt { .. }) => {
                let text = e.to_string();
                let ReadError::Corrupt { offset, kind } = e else { unreachable!() };
                assert_eq!(offset, 24 + 16 + 3);
                // The file says 65535; the limit applied is the clamped one, and it is named.
                assert_eq!(kind, CorruptKind::RecordTooLong { caplen: 0x7fff_ffff, limit: 262_144, snaplen: 65535 });
                assert!(text.contains("2147483647"), "{text}");
                assert!(text.contains("larger than the 262144 bytes allowed"), "{text}");
                assert!(text.contains("corrupt or truncated capture at byte offset 43"), "{text}");
            }
            other => panic!("expected corrupt, got {other:?}"),
        }
    }

    /// Gives its bytes, then fails (a disk error, a network file system going away).
    struct FailsAfter(std::io::Cursor<Vec<u8>>);

    impl Read for FailsAfter {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            match self.0.read(out)? {
                0 => Err(std::io::Error::other("device gone")),
                n => Ok(n),
            }
        }
    }

    /// A read error where a record would start is reported with that offset, not taken for the
    /// end of the file (the records after it would be lost without a word); read ahead or not.
    #[test]
    fn a_read_error_is_not_the_end_of_the_file() {
        let f = classic(&[(b"abc", 3), (b"defg", 4)]);
        let len = f.len() as u64;
        let ahead =
            crate::read_ahead::ReadAhead::start(FailsAfter(std::io::Cursor::new(f.clone())), 7).expect("thread");
        let readers = [
            Reader::new(FailsAfter(std::io::Cursor::new(f))).expect("header"),
            Reader::start(Input { ahead: Some(ahead), ..Input::new(FailsAfter(std::io::Cursor::new(Vec::new()))) })
                .expect("header"),
        ];
        for mut r in readers {
            assert_eq!(r.next_packet().expect("first").expect("a packet").data, b"abc");
            assert_eq!(r.next_packet().expect("second").expect("a packet").data, b"defg");
            match r.next_packet() {
                Err(e @ ReadError::Read { .. }) => {
                    let text = e.to_string();
                    let ReadError::Read { offset, source } = e else { unreachable!() };
                    assert_eq!(offset, len);
                    assert_eq!(source.to_string(), "device gone");
                    assert!(
                        text.contains(&format!("could not be read from byte offset {len} on: device gone")),
                        "{text}"
                    );
                }
                other => panic!("expected the read error, got {other:?}"),
            }
        }
    }

    #[test]
    fn garbage_is_not_a_capture() {
        let e = Reader::new(&b"hello world"[..]).err().expect("not a capture");
        assert_eq!(e.to_string(), "not a pcap or pcapng file (unknown magic 68656c6c)");
        assert!(matches!(e, ReadError::NotCapture(NotCapture::Magic { magic: [b'h', b'e', b'l', b'l'] })));
        let e = Reader::new(&b"he"[..]).err().expect("too short");
        assert_eq!(e.to_string(), "not a pcap or pcapng file (only 2 bytes)");
        assert!(matches!(e, ReadError::NotCapture(NotCapture::TooShort { len: 2 })));
    }

    /// The error of the first bad record or block of `bytes`, after the good packets.
    fn first_error(bytes: &[u8]) -> ReadError {
        let mut r = match Reader::new(bytes) {
            Ok(r) => r,
            Err(e) => return e,
        };
        loop {
            match r.next_packet() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("no error in {bytes:?}"),
                Err(e) => return e,
            }
        }
    }

    fn corrupt_kind(bytes: &[u8]) -> (u64, CorruptKind, String) {
        match first_error(bytes) {
            e @ ReadError::Corrupt { .. } => {
                let text = e.to_string();
                let ReadError::Corrupt { offset, kind } = e else { unreachable!() };
                (offset, kind, text)
            }
            other => panic!("expected a corrupt capture, got {other:?}"),
        }
    }

    /// Each defect of a classic file, at the offset of the record it spoils (worked out by
    /// hand: a 24-byte file header, then 16-byte record headers before their data).
    #[test]
    fn classic_defects_are_named_with_their_offsets() {
        let f = classic(&[(b"abc", 3), (b"defg", 4)]);
        // The file header cut after 10 bytes.
        let (offset, kind, text) = corrupt_kind(&f[..10]);
        assert_eq!((offset, kind), (0, CorruptKind::FileHeaderCut { got: 10 }));
        assert!(text.ends_with("at byte offset 0 (file header cut short (10 of 24 bytes))"), "{text}");
        // The second record (at 24 + 16 + 3 = 43) with 5 of its 16 header bytes.
        let (offset, kind, text) = corrupt_kind(&f[..43 + 5]);
        assert_eq!((offset, kind), (43, CorruptKind::RecordHeaderCut { got: 5 }));
        assert!(text.contains("record header cut short (5 of 16 bytes)"), "{text}");
        // The second record with 2 of its 4 data bytes.
        let (offset, kind, text) = corrupt_kind(&f[..43 + 16 + 2]);
        assert_eq!((offset, kind), (43, CorruptKind::RecordCut { got: 2, caplen: 4 }));
        assert!(text.contains("record cut short (2 of 4 bytes)"), "{text}");
    }

    /// A little-endian pcapng section header block (28 bytes) and an interface description
    /// (20 bytes, Ethernet).
    fn ng_head() -> Vec<u8> {
        let mut f = Vec::new();
        for word in [SHB, 28, 0x1a2b_3c4d] {
            f.extend_from_slice(&word.to_le_bytes());
        }
        f.extend_from_slice(&[1, 0, 0, 0]);
        f.extend_from_slice(&u64::MAX.to_le_bytes());
        f.extend_from_slice(&28u32.to_le_bytes());
        for word in [IDB, 20, 1, 0, 20] {
            f.extend_from_slice(&word.to_le_bytes());
        }
        f
    }

    /// An Enhanced Packet Block on interface `iface` with `data` (padded to 4 bytes).
    fn epb(iface: u32, data: &[u8]) -> Vec<u8> {
        let padded = (data.len() + 3) & !3;
        let total = 32 + padded as u32;
        let mut b = Vec::new();
        for word in [EPB, total, iface, 0, 1, data.len() as u32, data.len() as u32] {
            b.extend_from_slice(&word.to_le_bytes());
        }
        b.extend_from_slice(data);
        b.resize(28 + padded, 0);
        b.extend_from_slice(&total.to_le_bytes());
        b
    }

    /// Each defect of a pcapng file, at the offset of its block: the section header is 28
    /// bytes and the interface description 20, so the first packet block starts at 48.
    #[test]
    fn pcapng_defects_are_named_with_their_offsets() {
        let mut good = ng_head();
        good.extend(epb(0, b"abcd"));
        let mut r = Reader::new(&good[..]).expect("a capture");
        assert_eq!(r.next_packet().expect("ok").expect("a packet").data, b"abcd");
        assert!(r.next_packet().expect("clean end").is_none());

        let with = |block: &[u8]| [ng_head(), block.to_vec()].concat();
        let one = epb(0, b"abcd");
        // The packet block's header cut after 6 bytes.
        let (offset, kind, _) = corrupt_kind(&with(&one[..6]));
        assert_eq!((offset, kind), (48, CorruptKind::BlockHeaderCut { got: 6 }));
        // A length that is not a multiple of 4.
        let mut bad = one.clone();
        bad[4..8].copy_from_slice(&37u32.to_le_bytes());
        let (offset, kind, text) = corrupt_kind(&with(&bad));
        assert_eq!((offset, kind), (48, CorruptKind::BlockLength { total: 37 }));
        assert!(text.contains("block length 37 is not valid (at least 12, a multiple of 4"), "{text}");
        // Cut 20 bytes into its 36.
        let (offset, kind, text) = corrupt_kind(&with(&one[..20]));
        assert_eq!((offset, kind), (48, CorruptKind::BlockCut { got: 20, total: 36 }));
        assert!(text.contains("block cut short (20 of 36 bytes)"), "{text}");
        // The trailing copy of the length says 40.
        let mut bad = one.clone();
        bad[32..36].copy_from_slice(&40u32.to_le_bytes());
        let (offset, kind, text) = corrupt_kind(&with(&bad));
        assert_eq!((offset, kind), (48, CorruptKind::BlockLengthsDiffer { start: 36, end: Some(40) }));
        assert!(text.contains("block lengths at its start and end differ (36 and 40)"), "{text}");
        // Interface 3 was never described.
        let (offset, kind, text) = corrupt_kind(&with(&epb(3, b"abcd")));
        assert_eq!((offset, kind), (48, CorruptKind::UnknownInterface { iface: 3 }));
        assert!(text.contains("packet block names interface 3, which was not described"), "{text}");
        // A captured length of 9 in a block with room for 4.
        let mut bad = one.clone();
        bad[20..24].copy_from_slice(&9u32.to_le_bytes());
        let (offset, kind, _) = corrupt_kind(&with(&bad));
        assert_eq!((offset, kind), (48, CorruptKind::CaptureLengthPastBlock { caplen: 9 }));
        // A packet block of 12 bytes: no room for its fields.
        let short: Vec<u8> = [EPB, 12, 12].iter().flat_map(|w| w.to_le_bytes()).collect();
        let (offset, kind, _) = corrupt_kind(&with(&short));
        assert_eq!((offset, kind), (48, CorruptKind::PacketBlockTooShort));
        // A second section header with a byte-order magic of zeros.
        let shb: Vec<u8> = [SHB, 28, 0].iter().flat_map(|w| w.to_le_bytes()).collect();
        let (offset, kind, text) = corrupt_kind(&with(&shb));
        assert_eq!((offset, kind), (48, CorruptKind::ByteOrderMagic { magic: [0; 4] }));
        assert!(text.contains("unknown byte-order magic 00000000"), "{text}");
        // ... or cut inside its byte-order magic (8 + 2 of 12 bytes).
        let (offset, kind, _) = corrupt_kind(&with(&shb[..10]));
        assert_eq!((offset, kind), (48, CorruptKind::SectionHeaderCut { got: 10 }));
        // A simple packet block in a section without interfaces: the section header alone.
        let spb: Vec<u8> = [SPB, 16, 0, 16].iter().flat_map(|w| w.to_le_bytes()).collect();
        let bytes = [&ng_head()[..28], &spb[..]].concat();
        let (offset, kind, _) = corrupt_kind(&bytes);
        assert_eq!((offset, kind), (28, CorruptKind::SimplePacketWithoutInterface));
    }
}
