//! A capture file read on a thread of its own, a chunk ahead of the packet loop.
//!
//! Why: on a 1 GB capture the kernel's copy of the file into the reader's buffer was a third of
//! the reading thread's time (`read(2)` from the page cache), and that thread, which decodes and
//! reassembles every packet, is the one the others wait for. Here the `read` calls happen on
//! another thread, into a few recycled chunks of [`CHUNK`] bytes, and records are handed out of
//! the chunks where they lie: only a record that straddles two chunks is copied (into `spill`).

use std::io::Read;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// Bytes per read: the buffer should still be in a CPU cache when the packet loop gets to it.
pub const CHUNK: usize = 512 << 10;
/// Chunks read and not yet taken: enough to ride over a slow read, few enough to stay in cache.
const DEPTH: usize = 3;

pub struct ReadAhead {
    full: Receiver<Result<(Vec<u8>, usize), std::io::Error>>,
    /// Chunks handed back to the reading thread for reuse.
    empty: SyncSender<Vec<u8>>,
    chunk: Vec<u8>,
    /// Bytes of `chunk` that hold data, and how many of them were taken.
    len: usize,
    pos: usize,
    /// A record that straddles chunks, put together.
    spill: Vec<u8>,
    done: bool,
    /// The read error that ended the input, if one did.
    error: Option<std::io::Error>,
}

impl ReadAhead {
    /// Starts reading `input` on a new thread, `chunk` bytes at a time. A read error ends the
    /// input there and is kept ([`ReadAhead::take_error`]); dropping this value stops the thread at
    /// its next read (one blocked on an idle pipe ends when the writer writes or closes).
    pub fn start<R: Read + Send + 'static>(mut input: R, chunk: usize) -> std::io::Result<Self> {
        let (full_tx, full) = sync_channel::<Result<(Vec<u8>, usize), std::io::Error>>(DEPTH);
        let (empty, empty_rx) = sync_channel::<Vec<u8>>(DEPTH + 2);
        std::thread::Builder::new().name("tap-read-ahead".into()).spawn(move || {
            loop {
                let mut buf = empty_rx.try_recv().unwrap_or_else(|_| vec![0; chunk]);
                // One read per chunk: a regular file fills it, a pipe or a FIFO hands on what it
                // has, so a capture still being written is read as it comes.
                let len = loop {
                    match input.read(&mut buf) {
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            let _ = full_tx.send(Err(e));
                            return;
                        }
                        Ok(len) => break len,
                    }
                };
                if len == 0 || full_tx.send(Ok((buf, len))).is_err() {
                    break;
                }
            }
        })?;
        Ok(Self { full, empty, chunk: Vec::new(), len: 0, pos: 0, spill: Vec::new(), done: false, error: None })
    }

    /// Moves to the next chunk; false at the end of the input.
    fn next_chunk(&mut self) -> bool {
        let used = std::mem::take(&mut self.chunk);
        if !used.is_empty() {
            // The thread allocates another if the queue is full: nothing waits on this.
            let _ = self.empty.try_send(used);
        }
        (self.len, self.pos) = (0, 0);
        match self.full.recv() {
            Ok(Ok((chunk, len))) => {
                (self.chunk, self.len) = (chunk, len);
                true
            }
            Ok(Err(e)) => {
                self.error = Some(e);
                self.done = true;
                false
            }
            Err(_) => {
                self.done = true;
                false
            }
        }
    }

    /// The read error that ended the input, if one did (else it ended at the end of the file);
    /// taken, so the first caller gets it.
    pub fn take_error(&mut self) -> Option<std::io::Error> {
        self.error.take()
    }

    /// The next `n` bytes, or how many were there before the end (all consumed then).
    pub fn take(&mut self, n: usize) -> Result<&[u8], usize> {
        if self.len - self.pos >= n {
            let at = self.pos;
            self.pos += n;
            // `pos + n <= len <= chunk.len()`; were it not, nothing could be read.
            return self.chunk.get(at..at + n).ok_or(0);
        }
        self.spill.clear();
        let Some(ahead) = self.chunk.get(self.pos..self.len) else { return Err(0) };
        self.spill.extend_from_slice(ahead);
        self.pos = self.len;
        while self.spill.len() < n {
            if self.done || !self.next_chunk() {
                return Err(self.spill.len());
            }
            let k = (n - self.spill.len()).min(self.len);
            let Some(next) = self.chunk.get(..k) else { return Err(self.spill.len()) };
            self.spill.extend_from_slice(next);
            self.pos = k;
        }
        Ok(&self.spill)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any sequence of takes gives the bytes in order, whether a take fits in a chunk, straddles
    /// two or spans several; the end is reported with the bytes that were left.
    #[test]
    fn takes_across_chunks_give_the_input_in_order() {
        let input: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for chunk in [1, 7, 100, 1000, 4096, 1 << 20] {
            let mut r = ReadAhead::start(std::io::Cursor::new(input.clone()), chunk).expect("thread");
            let mut out = Vec::new();
            let mut size = 1;
            loop {
                match r.take(size) {
                    Ok(bytes) => out.extend_from_slice(bytes),
                    Err(left) => {
                        assert_eq!(left, input.len() - out.len(), "chunk {chunk}");
                        out.extend_from_slice(&input[out.len()..]);
                        break;
                    }
                }
                size = size * 3 % 2999 + 1;
            }
            assert_eq!(out, input, "chunk {chunk}");
            assert_eq!(r.take(1), Err(0));
        }
    }

    /// A capture still being written (a pipe, a FIFO) is read as it comes, not a chunk at a time:
    /// the bytes written so far are taken while the writer still holds the pipe open.
    #[test]
    fn a_pipe_is_read_as_it_comes() {
        let (reader, mut writer) = std::io::pipe().expect("pipe");
        let (got_tx, got_rx) = std::sync::mpsc::channel::<()>();
        let writing = std::thread::spawn(move || {
            use std::io::Write;
            writer.write_all(&[7; 100]).expect("write");
            // Held open until the bytes were taken (or 10 s: then the reader waited for more).
            got_rx.recv_timeout(std::time::Duration::from_secs(10)).is_ok()
        });
        let mut r = ReadAhead::start(reader, CHUNK).expect("thread");
        assert_eq!(r.take(100), Ok(&[7u8; 100][..]));
        let _ = got_tx.send(());
        assert!(writing.join().expect("writer"), "the bytes were only read when the writer closed the pipe");
        assert_eq!(r.take(1), Err(0));
    }
}
