//! Live capture with libpcap into a pcap file, with a stop that cannot hang on an idle link.
//!
//! `next_packet()` may block forever on an idle interface even with a read timeout, so the
//! capture runs in non-blocking mode and polls a stop flag between empty reads.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Counts at the end of a capture.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CaptureStats {
    pub packets_written: u64,
    pub bytes_written: u64,
    /// Dropped by the kernel for lack of buffer space (libpcap's ps_drop).
    pub dropped: u64,
    pub if_dropped: u64,
}

/// A capture running on its own thread, writing every matching packet to a pcap file.
pub struct LiveCapture {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<CaptureStats, TapError>>,
    pub path: PathBuf,
}

fn open_error(device: &str, e: pcap::Error) -> TapError {
    let detail = e.to_string();
    let denied = detail.contains("ermission") || detail.contains("not permitted");
    if denied {
        TapError::NoCapturePermission { device: device.into(), detail }
    } else {
        TapError::Capture { device: device.into(), detail }
    }
}

impl LiveCapture {
    /// Opens the device and the output file before returning, so a caller learns at once when
    /// capture is not permitted, and no packet after this call is missed.
    pub fn start(opts: &LiveOptions, out: &Path) -> Result<Self, TapError> {
        let dev = opts.device.as_str();
        let cap = pcap::Capture::from_device(dev)
            .map_err(|e| open_error(dev, e))?
            .promisc(opts.promisc)
            .immediate_mode(true)
            .snaplen(opts.snaplen)
            .buffer_size(opts.buffer_size)
            .open()
            .map_err(|e| open_error(dev, e))?;
        let mut cap = cap.setnonblock().map_err(|e| open_error(dev, e))?;
        cap.filter(&opts.filter, true)
            .map_err(|e| TapError::Filter { filter: opts.filter.clone(), detail: e.to_string() })?;
        let mut file =
            cap.savefile(out).map_err(|e| TapError::Open { path: out.display().to_string(), detail: e.to_string() })?;
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
                            file.write(&p);
                            stats.packets_written += 1;
                            stats.bytes_written += p.header.caplen as u64;
                        }
                        Err(pcap::Error::TimeoutExpired) | Err(pcap::Error::NoMorePackets) => {
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
                            let _ = file.flush();
                            return Err(TapError::Capture { device, detail: e.to_string() });
                        }
                    }
                }
                if let Ok(s) = cap.stats() {
                    stats.dropped = s.dropped as u64;
                    stats.if_dropped = s.if_dropped as u64;
                }
                file.flush().map_err(|e| TapError::Capture { device, detail: format!("flushing the capture: {e}") })?;
                Ok(stats)
            })
            .map_err(|e| TapError::Capture { device: opts.device.clone(), detail: e.to_string() })?;
        Ok(Self { stop, thread, path: out.to_path_buf() })
    }

    /// Stops after draining what the kernel already holds, and flushes the file.
    pub fn stop(self) -> Result<CaptureStats, TapError> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(TapError::Capture { device: "?".into(), detail: "capture thread panicked".into() }))
    }
}
