//! A capture file read in place: mapped into memory instead of copied out by `read`.
//!
//! Why: the tap reads a capture once, front to back, and copies each packet's payload into its
//! flow anyway. Reading through `read(2)` adds a kernel copy of the whole file into a user
//! buffer, and on this class of machine (2 vCPUs) that copy was about a third of the reading
//! thread's time on a 1 GB capture. A mapping hands the page cache's bytes to the record parser
//! directly.
//!
//! Memory: mapped pages count in the process's resident set while they are mapped, so the pages
//! already read are dropped from the mapping as the reader moves on ([`MappedFile::release_before`],
//! `MADV_DONTNEED`; they stay in the page cache). The resident set then grows by at most
//! [`RELEASE_STEP`] plus the kernel's read-ahead, whatever the file's size.
//!
//! The one hazard of a mapping: if another process truncates the file while it is mapped,
//! touching the lost pages raises SIGBUS. Capture writers (tcpdump, dumpcap, the project's own
//! recorder) only ever append, and appended bytes are simply not seen (the length is fixed when
//! the file is opened), so the tap maps only regular files and reads everything else (pipes,
//! devices, standard input) with `read`.
#![allow(unsafe_code)]

use memmap2::{Advice, Mmap, UncheckedAdvice};

/// Pages before the reading position are dropped from the mapping in steps of this many bytes.
pub const RELEASE_STEP: usize = 16 << 20;
/// Released ranges end on this boundary: a multiple of every page size Linux uses (4 KiB to
/// 64 KiB), so the page holding the current position is never dropped.
const ALIGN: usize = 64 << 10;

pub struct MappedFile {
    map: Mmap,
    /// Bytes before this offset are no longer mapped in (they are re-read from the page cache if
    /// touched again, which the reader never does).
    released: usize,
}

impl MappedFile {
    /// Maps `file` if it is a non-empty regular file and the mapping succeeds; `None` means read
    /// it with `read` instead.
    pub fn open(file: &std::fs::File) -> Option<Self> {
        let meta = file.metadata().ok()?;
        if !meta.is_file() || meta.len() == 0 || usize::try_from(meta.len()).is_err() {
            return None;
        }
        // SAFETY: the mapping is read-only and private to this value; its bytes are only ever
        // handed out as shared slices borrowed from it. The remaining hazard, another process
        // truncating the file meanwhile, is the one documented at the top of this module.
        let map = unsafe { Mmap::map(file) }.ok()?;
        // Read-ahead sized for a front-to-back scan; advisory only, so a failure changes nothing.
        let _ = map.advise(Advice::Sequential);
        Some(Self { map, released: 0 })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Drops the pages before `offset` (rounded down to [`ALIGN`]) from the mapping, once at
    /// least [`RELEASE_STEP`] bytes have been passed since the last time.
    pub fn release_before(&mut self, offset: usize) {
        let upto = offset.min(self.map.len()) & !(ALIGN - 1);
        if upto < self.released + RELEASE_STEP {
            return;
        }
        // SAFETY: `&mut self` proves no slice of the mapping is borrowed now, and the reader
        // never looks before `offset` again. For a read-only file mapping, MADV_DONTNEED only
        // unmaps the pages: touching them again would re-read the same bytes from the file.
        let _ =
            unsafe { self.map.unchecked_advise_range(UncheckedAdvice::DontNeed, self.released, upto - self.released) };
        self.released = upto;
    }
}
