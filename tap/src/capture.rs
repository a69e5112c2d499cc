//! Live capture with libpcap into a pcap file, with a stop that cannot hang on an idle link.
//!
//! `next_packet()` may block forever on an idle interface even with a read timeout, so the
//! capture runs in non-blocking mode and polls a stop flag between empty reads.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::TapError;

#[derive(Debug, Clone)]
pub struct LiveOptions {
    pub device: String,
    pub filter: String,
    pub snaplen: i32,
    /// Kernel buffer, bytes: large enough that bursts of loopback traffic are not dropped.
    pub buffer_size: i32,
    /// When set, only packets between the two ends of one of these links are kept (each pair in
    /// either order). This places the tap on chosen lines: a BPF filter of thousands of host
    /// pairs would exceed the kernel's program size, so the choice is made here.
    pub links: Option<std::collections::HashSet<(std::net::IpAddr, std::net::IpAddr)>>,
    /// Promiscuous mode: needed on a Linux bridge, which passes frames it forwards between its
    /// ports up to a capture only when promiscuous.
    pub promisc: bool,
}

/// A link as an unordered pair of addresses.
pub fn link(a: std::net::IpAddr, b: std::net::IpAddr) -> (std::net::IpAddr, std::net::IpAddr) {
    if a <= b { (a, b) } else { (b, a) }
}

impl Default for LiveOptions {
    fn default() -> Self {
        Self {
            device: "lo".into(),
            filter: "tcp".into(),
            snaplen: 262_144,
            buffer_size: 64 << 20,
            links: None,
            promisc: false,
        }
    }
}

/// Counts at the end of a capture (the run's manifest records them).
pub use records::CaptureStats;

/// A capture running on its own thread, writing every matching packet to a pcap file.
pub struct LiveCapture {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<CaptureStats, TapError>>,
    /// The device captured on (for the error of a capture thread that panicked).
    device: String,
    /// The pcap file written, if any.
    pub path: Option<PathBuf>,
}

fn open_error(device: &str, source: pcap::Error) -> TapError {
    let detail = source.to_string();
    let denied = detail.contains("ermission") || detail.contains("not permitted");
    if denied {
        TapError::NoCapturePermission { device: device.into(), source }
    } else {
        TapError::Capture { device: device.into(), source }
    }
}

impl LiveCapture {
    /// Opens the device and the output file before returning, so a caller learns at once when
    /// capture is not permitted, and no packet after this call is missed.
    pub fn start(opts: &LiveOptions, out: &Path) -> Result<Self, TapError> {
        Self::launch(opts, Some(out), None)
    }

    /// Like [`LiveCapture::start`], and the packets are also handed, as they are captured, to
    /// the returned [`PacketStream`]: a pcap byte stream that [`crate::stream_reader`]
    /// reads, so records come out while the capture runs. `out` is optional here (a long live
    /// session need not fill a disk). The stream ends when the capture stops; if its reader
    /// goes away first, the capture goes on writing the file.
    pub fn start_streaming(opts: &LiveOptions, out: Option<&Path>) -> Result<(Self, PacketStream), TapError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(STREAM_CHUNKS);
        let capture = Self::launch(opts, out, Some(tx))?;
        Ok((capture, PacketStream { rx, chunk: Vec::new(), pos: 0 }))
    }

    fn launch(opts: &LiveOptions, out: Option<&Path>, stream: Option<SyncSender<Vec<u8>>>) -> Result<Self, TapError> {
        let dev = opts.device.as_str();
        // Not libpcap's immediate mode: on Linux that is a TPACKET_V2 ring of fixed frames, each
        // as large as the snapshot length (262,144 B, since loopback's offloads pass packets
        // larger than its MTU), so 64 MiB held only about 256 packets of any size, and a burst
        // while this thread slept was dropped (191 of 712 packets of a run under load). Without
        // it, TPACKET_V3 packs packets into blocks, the buffer holds what its bytes hold, and
        // the kernel hands over a block at the latest `BLOCK_TIMEOUT_MS` after its first packet.
        let cap = pcap::Capture::from_device(dev)
            .map_err(|e| open_error(dev, e))?
            .promisc(opts.promisc)
            .timeout(BLOCK_TIMEOUT_MS)
            .snaplen(opts.snaplen)
            .buffer_size(opts.buffer_size)
            .open()
            .map_err(|e| open_error(dev, e))?;
        let mut cap = cap.setnonblock().map_err(|e| open_error(dev, e))?;
        cap.filter(&opts.filter, true).map_err(|source| TapError::Filter { filter: opts.filter.clone(), source })?;
        let mut file = out
            .map(|out| {
                cap.savefile(out).map_err(|source| TapError::Savefile { path: out.display().to_string(), source })
            })
            .transpose()?;
        let path = out.map(|p| p.display().to_string()).unwrap_or_default();
        let linktype_number = cap.get_datalink().0;
        let mut stream = stream.map(|tx| Streamer::new(tx, linktype_number, opts.snaplen));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let device = opts.device.clone();
        let links = opts.links.clone();
        let linktype = crate::decode::Link::from_dlt(cap.get_datalink().0);
        let thread = std::thread::Builder::new()
            .name("smtplab-capture".into())
            .spawn(move || {
                let mut stats = CaptureStats::default();
                let mut stopping = false;
                loop {
                    match cap.next_packet() {
                        Ok(p) => {
                            if let Some(keep) = &links {
                                let on_link = linktype
                                    .and_then(|l| crate::decode::decode(l, p.data).ok())
                                    .is_some_and(|seg| keep.contains(&link(seg.src, seg.dst)));
                                if !on_link {
                                    continue;
                                }
                            }
                            if let Some(f) = file.as_mut() {
                                f.write(&p);
                            }
                            if let Some(s) = stream.as_mut() {
                                s.push(&p);
                            }
                            stats.packets_written += 1;
                            stats.bytes_written += p.header.caplen as u64;
                        }
                        Err(pcap::Error::TimeoutExpired) | Err(pcap::Error::NoMorePackets) => {
                            // An idle moment: hand the dissector what is batched, so records of
                            // sessions that just ended come out without waiting for more traffic.
                            if let Some(s) = stream.as_mut() {
                                s.flush();
                            }
                            // Nothing buffered. After a stop request, one empty read means the
                            // kernel buffer is drained.
                            if stopping {
                                break;
                            }
                            if flag.load(Ordering::Relaxed) {
                                stopping = true;
                                std::thread::sleep(Duration::from_millis(50));
                                continue;
                            }
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        Err(e) => {
                            if let Some(f) = file.as_mut() {
                                let _ = f.flush();
                            }
                            if let Some(s) = stream.as_mut() {
                                s.flush();
                            }
                            return Err(TapError::Capture { device, source: e });
                        }
                    }
                }
                if let Ok(s) = cap.stats() {
                    stats.dropped = s.dropped as u64;
                    stats.if_dropped = s.if_dropped as u64;
                }
                if let Some(s) = stream.as_mut() {
                    s.flush();
                }
                if let Some(f) = file.as_mut() {
                    f.flush().map_err(|source| TapError::Flush { device, path, source })?;
                }
                Ok(stats)
            })
            .map_err(|source| TapError::Thread { device: opts.device.clone(), source })?;
        Ok(Self { stop, thread, device: opts.device.clone(), path: out.map(Path::to_path_buf) })
    }

    /// Stops after draining what the kernel already holds, and flushes the file.
    pub fn stop(self) -> Result<CaptureStats, TapError> {
        self.stop.store(true, Ordering::Relaxed);
        let device = self.device;
        self.thread.join().unwrap_or(Err(TapError::ThreadPanicked { device }))
    }
}

/// The longest a captured packet waits in a partly filled kernel block before the capture
/// thread can read it. The stop drains for longer than this (it sleeps 50 ms before its last
/// read), so nothing captured before a stop is left behind.
const BLOCK_TIMEOUT_MS: i32 = 10;

/// Chunks of pcap bytes in flight to a [`PacketStream`]: with 64 KiB chunks, at most 16 MiB
/// between the capture and a dissector that falls behind (the kernel buffer holds the rest).
const STREAM_CHUNKS: usize = 256;
/// A chunk is handed over when it reaches this size, or when the link goes idle.
const STREAM_CHUNK_BYTES: usize = 64 << 10;

/// The capture thread's end of a [`PacketStream`]: packets in classic pcap record format,
/// batched into chunks.
struct Streamer {
    tx: Option<SyncSender<Vec<u8>>>,
    chunk: Vec<u8>,
}

impl Streamer {
    fn new(tx: SyncSender<Vec<u8>>, linktype: i32, snaplen: i32) -> Self {
        let mut chunk = Vec::with_capacity(STREAM_CHUNK_BYTES);
        chunk.extend_from_slice(&crate::pcapwrite::file_header(linktype as u32, snaplen.max(0) as u32));
        Streamer { tx: Some(tx), chunk }
    }

    fn push(&mut self, p: &pcap::Packet<'_>) {
        if self.tx.is_none() {
            return;
        }
        let h = p.header;
        // Seconds past 2106 or before 1970 do not fit the format; clamp rather than wrap.
        let secs = u32::try_from(h.ts.tv_sec).unwrap_or(if h.ts.tv_sec < 0 { 0 } else { u32::MAX });
        let micros = u32::try_from(h.ts.tv_usec).unwrap_or(0);
        self.chunk.extend_from_slice(&crate::pcapwrite::record_header(secs, micros, p.data.len() as u32, h.len));
        self.chunk.extend_from_slice(p.data);
        if self.chunk.len() >= STREAM_CHUNK_BYTES {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.chunk.is_empty() {
            return;
        }
        let Some(tx) = &self.tx else { return };
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(STREAM_CHUNK_BYTES));
        if tx.send(chunk).is_err() {
            // The reader is gone (its consumer stopped early): go on capturing to the file only.
            self.tx = None;
        }
    }
}

/// Live packets as a pcap byte stream (see [`LiveCapture::start_streaming`]). Reading blocks
/// until packets come; the stream ends once the capture has stopped and everything it captured
/// has been read.
pub struct PacketStream {
    rx: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for PacketStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(next) => {
                    self.chunk = next;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        // Reading from a byte slice copies what fits and cannot fail.
        let mut rest = self.chunk.get(self.pos..).unwrap_or_default();
        let n = rest.read(buf)?;
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What libpcap refuses, with its reason as the source. Needs the right to capture on `lo`
    /// (root or CAP_NET_RAW), as the relay's live-capture tests do; without it, it fails and
    /// says so.
    #[test]
    fn refusals_keep_libpcap_s_reason() {
        let bad_filter = LiveOptions { filter: "tcp and and".into(), ..Default::default() };
        let out = std::env::temp_dir().join(format!("tap-capture-test-{}.pcap", std::process::id()));
        match LiveCapture::start(&bad_filter, &out) {
            Err(e @ TapError::NoCapturePermission { .. }) => {
                panic!("this test needs the right to capture on lo (root or CAP_NET_RAW): {e}")
            }
            Err(e @ TapError::Filter { .. }) => {
                let text = e.to_string();
                let TapError::Filter { filter, source } = e else { unreachable!() };
                assert_eq!(filter, "tcp and and");
                assert!(matches!(source, pcap::Error::PcapError(_)), "{source:?}");
                assert!(text.starts_with("invalid capture filter \"tcp and and\": libpcap error: "), "{text}");
                assert!(text.ends_with("(the syntax is tcpdump's: see pcap-filter(7))"), "{text}");
            }
            other => panic!("expected a filter error, got {:?}", other.map(|_| ())),
        }
        let nowhere = Path::new("/nonexistent-dir/capture.pcap");
        match LiveCapture::start(&LiveOptions::default(), nowhere) {
            Err(e @ TapError::Savefile { .. }) => {
                assert!(e.to_string().starts_with("/nonexistent-dir/capture.pcap: cannot write the capture here: "));
            }
            other => panic!("expected a savefile error, got {:?}", other.map(|_| ())),
        }
        let no_device = LiveOptions { device: "smtplab-no-such-device0".into(), ..Default::default() };
        match LiveCapture::start(&no_device, &out) {
            Err(e @ TapError::Capture { .. }) => {
                assert!(e.to_string().starts_with("cannot capture on smtplab-no-such-device0: "), "{e}");
            }
            other => panic!("expected a capture error, got {:?}", other.map(|_| ())),
        }
        assert!(!out.exists(), "nothing was written");
    }

    /// A burst on loopback far faster than the capture thread polls (it sleeps 2 ms between
    /// empty reads) is kept whole. With libpcap's immediate mode the kernel ring held about 256
    /// packets whatever their size, and this burst lost thousands. Needs the right to capture
    /// on `lo`; address and port are this test's alone (ARCHITECTURE.md, "Tests side by side").
    #[test]
    fn a_burst_is_captured_whole() {
        const BURST: u64 = 20_000;
        let (addr, port) = ("127.0.94.1", 27601);
        let out = std::env::temp_dir().join(format!("tap-capture-burst-{}.pcap", std::process::id()));
        let opts = LiveOptions { filter: format!("udp and host {addr} and port {port}"), ..Default::default() };
        let capture = LiveCapture::start(&opts, &out)
            .unwrap_or_else(|e| panic!("this test needs the right to capture on lo (root or CAP_NET_RAW): {e}"));
        // The receiver is never read: its socket drops what overflows it, after the tap.
        let _rx = std::net::UdpSocket::bind((addr, port)).expect("bind the receiver");
        let tx = std::net::UdpSocket::bind((addr, 0)).expect("bind the sender");
        for i in 0..BURST {
            tx.send_to(&i.to_be_bytes(), (addr, port)).expect("send on loopback");
        }
        let stats = capture.stop().expect("the capture stops");
        let written = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
        let _ = std::fs::remove_file(&out);
        assert_eq!((stats.packets_written, stats.dropped), (BURST, 0), "every datagram of the burst, none dropped");
        // 24-byte file header; each record a 16-byte header and 14 + 20 + 8 + 8 bytes of frame.
        assert_eq!(written, 24 + BURST * (16 + 50));
    }
}
