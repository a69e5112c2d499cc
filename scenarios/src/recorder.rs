//! The link recorder: where live capture is not permitted, every system-to-system connection is
//! relayed through a small proxy that writes what crosses it to the same pcap format, with TCP/IP
//! framing synthesised by etherparse (handshake, data segments with real sequence numbers, FINs).
//! The proxy is transparent to TLS: it copies bytes. The 4-tuple in the file is the one the
//! relays record (client socket, proxy address), so analysis joins the two as with a live tap.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tap::pcapwrite::{Flags, LinkKind, PcapWriter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::error::ScenarioError;

type Writer = Arc<Mutex<PcapWriter<std::fs::File>>>;

pub struct Recorder {
    tasks: JoinSet<()>,
    pub packets: Arc<AtomicU64>,
}

/// One proxied line end: clients connect to `listen`, the proxy connects on to `target`.
pub struct Proxy {
    pub listen: SocketAddr,
    pub target: SocketAddr,
}

impl Recorder {
    /// Starts one proxy per system. Only connections between a pair in `tapped` (unordered
    /// addresses; `None`: all) are written to the file; all are relayed.
    pub async fn start(
        path: &Path,
        proxies: Vec<Proxy>,
        tapped: Option<HashSet<(IpAddr, IpAddr)>>,
    ) -> Result<Recorder, ScenarioError> {
        let file = std::fs::File::create(path).map_err(ScenarioError::io(path.display().to_string()))?;
        let writer =
            PcapWriter::new(file, LinkKind::Ethernet).map_err(ScenarioError::io(path.display().to_string()))?;
        let writer: Writer = Arc::new(Mutex::new(writer));
        let packets = Arc::new(AtomicU64::new(0));
        let tapped = Arc::new(tapped);
        let mut tasks = JoinSet::new();
        for p in proxies {
            let listener = TcpListener::bind(p.listen)
                .await
                .map_err(|source| ScenarioError::Relay(relay::RelayError::Listen { addr: p.listen, source }))?;
            let (writer, packets, tapped) = (writer.clone(), packets.clone(), tapped.clone());
            tasks.spawn(async move {
                let mut conns = JoinSet::new();
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let Ok((client, peer)) = accepted else { continue };
                            let record = tapped
                                .as_ref()
                                .as_ref()
                                .is_none_or(|t| t.contains(&tap::capture::link(peer.ip(), p.listen.ip())));
                            let w = record.then(|| (writer.clone(), packets.clone()));
                            conns.spawn(relay_one(client, peer, p.listen, p.target, w));
                        }
                        Some(_) = conns.join_next(), if !conns.is_empty() => {}
                    }
                }
            });
        }
        Ok(Recorder { tasks, packets })
    }

    /// Stops the proxies; returns the packets written. (Frames go to the file unbuffered, so a
    /// crash loses nothing already recorded.)
    pub fn stop(mut self) -> u64 {
        self.tasks.abort_all();
        self.packets.load(Ordering::Relaxed)
    }
}

/// Per-direction TCP state of a synthesised connection.
struct Half {
    from: SocketAddr,
    to: SocketAddr,
    seq: u32,
}

fn now() -> f64 {
    relay::now_secs()
}

fn emit(w: &Option<(Writer, Arc<AtomicU64>)>, h: &Half, ack: u32, flags: Flags, payload: &[u8]) {
    let Some((writer, packets)) = w else { return };
    let mut pw = writer.lock().unwrap_or_else(|p| p.into_inner());
    // Segments of at most 65,000 payload bytes, as a capture with segmentation offload shows.
    if payload.is_empty() {
        if pw.write_tcp(now(), h.from, h.to, h.seq, ack, flags, payload).is_ok() {
            packets.fetch_add(1, Ordering::Relaxed);
        }
        return;
    }
    for (i, chunk) in payload.chunks(65_000).enumerate() {
        let seq = h.seq.wrapping_add((i * 65_000) as u32);
        if pw.write_tcp(now(), h.from, h.to, seq, ack, flags, chunk).is_ok() {
            packets.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Relays one connection and records it.
async fn relay_one(
    client: TcpStream,
    peer: SocketAddr,
    listen: SocketAddr,
    target: SocketAddr,
    w: Option<(Writer, Arc<AtomicU64>)>,
) {
    let Ok(server) = TcpStream::connect(target).await else { return };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    // Initial sequence numbers derived from the ports: stable, and distinct per connection.
    let c = Arc::new(Mutex::new(Half { from: peer, to: listen, seq: (peer.port() as u32) << 16 }));
    let s = Arc::new(Mutex::new(Half { from: listen, to: peer, seq: (listen.port() as u32) << 16 | 7 }));
    {
        let (mut cl, mut sl) = (lock(&c), lock(&s));
        emit(&w, &cl, 0, Flags { syn: true, ..Default::default() }, &[]);
        emit(&w, &sl, cl.seq.wrapping_add(1), Flags { syn: true, ack: true, ..Default::default() }, &[]);
        cl.seq = cl.seq.wrapping_add(1);
        sl.seq = sl.seq.wrapping_add(1);
        emit(&w, &cl, sl.seq, Flags { ack: true, ..Default::default() }, &[]);
    }
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pump(cr, sw, c.clone(), s.clone(), w.clone());
    let down = pump(sr, cw, s, c, w);
    tokio::join!(up, down);
}

fn lock(h: &Arc<Mutex<Half>>) -> std::sync::MutexGuard<'_, Half> {
    h.lock().unwrap_or_else(|p| p.into_inner())
}

/// Copies one direction, recording each chunk as a segment, and a FIN at the end.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    me: Arc<Mutex<Half>>,
    other: Arc<Mutex<Half>>,
    w: Option<(Writer, Arc<AtomicU64>)>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        {
            let ack = lock(&other).seq;
            let mut h = lock(&me);
            emit(&w, &h, ack, Flags { ack: true, psh: true, ..Default::default() }, &buf[..n]);
            h.seq = h.seq.wrapping_add(n as u32);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    {
        let ack = lock(&other).seq;
        let mut h = lock(&me);
        emit(&w, &h, ack, Flags { fin: true, ack: true, ..Default::default() }, &[]);
        h.seq = h.seq.wrapping_add(1);
    }
    let _ = to.shutdown().await;
}
