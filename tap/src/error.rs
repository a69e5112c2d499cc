//! Tap errors, in two groups: a live capture the local machine could not make (permissions,
//! the device, the filter, the file written), and a capture file that could not be read (the
//! file itself, or the input's own defects: not a capture, corrupt at a byte offset, a link type
//! the tap does not read). Each keeps what caused it as its `source` (libpcap's error, the I/O
//! error) or, for a corrupt capture, what was wrong with it ([`CorruptKind`]).

use crate::pcapfile::{CorruptKind, NotCapture, ReadError};

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    // A live capture could not be made.
    #[error(
        "no permission to capture on {device} ({source}): run as root, or give the binary the \
         capability with `sudo setcap cap_net_raw,cap_net_admin=eip BINARY`"
    )]
    NoCapturePermission { device: String, source: pcap::Error },
    /// libpcap could not open the device, or reading from it failed.
    #[error("cannot capture on {device}: {source}")]
    Capture { device: String, source: pcap::Error },
    #[error("invalid capture filter {filter:?}: {source} (the syntax is tcpdump's: see pcap-filter(7))")]
    Filter { filter: String, source: pcap::Error },
    /// libpcap could not create the pcap file to write the capture into.
    #[error("{path}: cannot write the capture here: {source}")]
    Savefile { path: String, source: pcap::Error },
    /// The pcap file being written could not be flushed when the capture stopped.
    #[error("cannot capture on {device}: flushing the capture to {path}: {source}; its last packets may be missing")]
    Flush { device: String, path: String, source: pcap::Error },
    #[error("cannot capture on {device}: cannot start the capture thread: {source}")]
    Thread { device: String, source: std::io::Error },
    #[error("cannot capture on {device}: the capture thread panicked (a bug: please report it)")]
    ThreadPanicked { device: String },

    // A capture file could not be read.
    #[error("{path}: is a directory; give a pcap or pcapng file")]
    Directory { path: String },
    #[error("{path}: {source}")]
    Open { path: String, source: std::io::Error },
    #[error("{path}: cannot start reading: {source}")]
    ReadStart { path: String, source: std::io::Error },
    #[error("{path}: not a pcap or pcapng file ({source})")]
    NotCapture { path: String, source: NotCapture },
    #[error("{path}: corrupt or truncated capture at byte offset {offset} ({kind}); records before it were kept")]
    Corrupt { path: String, offset: u64, kind: CorruptKind },
    /// Reading failed part-way (a disk error, a file system going away): what follows is unknown.
    #[error(
        "{path}: the capture could not be read from byte offset {offset} on ({source}); records before it \
         were kept"
    )]
    Read { path: String, offset: u64, source: std::io::Error },
    #[error(
        "{path}: unsupported link type {linktype} ({}); smtplab reads Ethernet, Linux cooked (SLL, SLL2), BSD loopback and raw IP captures",
        linktype_name(*.linktype)
    )]
    LinkType { path: String, linktype: i32 },
}

impl TapError {
    /// The error of reading the capture `path`, from the reader's.
    pub fn from_read(path: &str, e: ReadError) -> Self {
        let path = path.to_string();
        match e {
            ReadError::NotCapture(source) => TapError::NotCapture { path, source },
            ReadError::Corrupt { offset, kind } => TapError::Corrupt { path, offset, kind },
            ReadError::Read { offset, source } => TapError::Read { path, offset, source },
            ReadError::Start(source) => TapError::ReadStart { path, source },
        }
    }
}

/// libpcap's name of a link type ("LINUX_SLL"), or "unknown".
fn linktype_name(linktype: i32) -> String {
    pcap::Linktype(linktype).get_name().unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_file_the_offset_and_what_to_do() {
        let e = TapError::Corrupt {
            path: "cut.pcap".into(),
            offset: 43,
            kind: CorruptKind::RecordCut { got: 2, caplen: 4 },
        };
        assert_eq!(
            e.to_string(),
            "cut.pcap: corrupt or truncated capture at byte offset 43 (record cut short (2 of 4 bytes)); records \
             before it were kept"
        );
        let e = TapError::LinkType { path: "x.pcap".into(), linktype: 147 };
        assert!(e.to_string().starts_with("x.pcap: unsupported link type 147 ("), "{e}");
        assert!(e.to_string().contains("smtplab reads Ethernet"), "{e}");
        let e = TapError::NoCapturePermission {
            device: "lo".into(),
            source: pcap::Error::PcapError("socket: Operation not permitted".into()),
        };
        let text = e.to_string();
        assert!(text.starts_with("no permission to capture on lo (libpcap error: socket: Operation not permitted)"));
        assert!(text.contains("setcap cap_net_raw"), "{text}");
        let e = TapError::Read { path: "a.pcap".into(), offset: 100, source: std::io::Error::other("device gone") };
        assert!(e.to_string().contains("from byte offset 100 on (device gone); records before it were kept"), "{e}");
        let e = TapError::from_read("n.txt", ReadError::NotCapture(NotCapture::TooShort { len: 2 }));
        assert_eq!(e.to_string(), "n.txt: not a pcap or pcapng file (only 2 bytes)");
    }
}
