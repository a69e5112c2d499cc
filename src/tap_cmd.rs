//! `smtplab tap`: the eavesdropper on its own, on a capture file or live on an interface.
//!
//! Records are streamed from the tap ([`tap::dissect_file_with`], [`tap::dissect_reader_with`])
//! as each TCP session ends, from a file, from standard input or from a live capture, so any
//! amount of traffic is read in bounded memory: JSON lines are written as they come, the
//! table prints each session as it ends and the system-to-system volume table at the end, and
//! Parquet tables are written a row group at a time. A corrupt or truncated
//! capture ends the read with an error naming the file and byte offset; the records found
//! before it are output, and the exit code is 1.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use records::{TapRecord, TapSession, TapTransaction};

use crate::cli::TapFormat;

/// `smtplab tap` arguments.
#[derive(clap::Args, Debug)]
pub struct TapArgs {
    /// Capture file (pcap or pcapng: Ethernet, VLAN, Linux SLL/SLL2, BSD loopback, raw IP), or
    /// `-` for a pcap stream on standard input (`tcpdump -w - | smtplab tap -`).
    #[arg(required_unless_present = "live", conflicts_with = "live")]
    pub capture: Option<PathBuf>,
    /// table: each session, then the system-to-system volume table; jsonl: one JSON object per
    /// record; parquet: sessions.parquet, transactions.parquet, tls_records.parquet (each TLS
    /// application-data record) and volume.parquet (the system-to-system table) in --out.
    #[arg(long, value_enum, default_value_t = TapFormat::Table)]
    pub format: TapFormat,
    /// Directory for --format parquet (created if missing; default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Capture live on this interface (needs root or CAP_NET_RAW) until Ctrl-C or --duration;
    /// records come out as sessions end.
    #[arg(long, value_name = "IFACE")]
    pub live: Option<String>,
    /// BPF filter for --live (default: tcp).
    #[arg(long, value_name = "BPF", requires = "live")]
    pub filter: Option<String>,
    /// Stop a live capture after this many seconds.
    #[arg(long, value_name = "SECS", requires = "live")]
    pub duration: Option<f64>,
    /// Also write the live capture to this pcap file (records are dissected as packets come,
    /// whether or not the packets are kept).
    #[arg(long, value_name = "FILE", requires = "live")]
    pub write: Option<PathBuf>,
    /// Also write every message seen whole in the clear into DIR, one `<uid>-<trans_depth>.eml`
    /// each (as dsniff's mailsnarf does); its sha256 is the transaction's `sha256`.
    #[arg(long, value_name = "DIR")]
    pub extract: Option<PathBuf>,
    /// Bytes kept of each packet in a live capture.
    #[arg(long, value_name = "BYTES", default_value_t = 262_144, requires = "live")]
    pub snaplen: i32,
}

pub fn run(args: TapArgs) -> Result<ExitCode> {
    if args.out.is_some() && !matches!(args.format, TapFormat::Parquet) {
        bail!("--out is for --format parquet (table and jsonl go to standard output)");
    }
    if args.live.is_none() && (args.filter.is_some() || args.duration.is_some() || args.write.is_some()) {
        bail!("--filter, --duration and --write go with --live IFACE");
    }
    if let Some(out) = &args.out
        && out.exists()
        && !out.is_dir()
    {
        bail!("--out {} is not a directory; give the directory for the two parquet files", out.display());
    }
    if let Some(iface) = &args.live {
        return live(&args, iface);
    }
    let Some(capture) = &args.capture else { bail!("give a capture file, or --live IFACE") };
    let source = if capture.as_os_str() == "-" {
        Input::Stream { name: "standard input".into(), input: Box::new(std::io::stdin().lock()) }
    } else {
        Input::File(capture.clone())
    };
    let source = Source { input: source, extract: args.extract.clone() };
    dissect(source, &args)
}

/// Where the packets come from: a capture file, or a pcap byte stream (standard input, as in
/// `tcpdump -w - | smtplab tap -`, or a live capture) read as it arrives.
struct Source {
    input: Input,
    /// `--extract DIR`: write each message seen whole there.
    extract: Option<PathBuf>,
}

enum Input {
    File(PathBuf),
    Stream { name: String, input: Box<dyn std::io::Read> },
}

impl Source {
    fn is_stream(&self) -> bool {
        matches!(self.input, Input::Stream { .. })
    }

    fn read(self, mut on_record: impl FnMut(TapRecord) -> ControlFlow<()>) -> Result<tap::ReadSummary> {
        let Some(dir) = self.extract else {
            return Ok(match self.input {
                Input::File(path) => tap::dissect_file_with(&path, on_record)?,
                Input::Stream { name, input } => tap::dissect_stream_with(&name, input, on_record)?,
            });
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let (mut saved, mut failed) = (0u64, None);
        let mut each = |r: TapRecord, message: Option<Vec<u8>>| {
            if let (TapRecord::Transaction(t), Some(m)) = (&r, message) {
                match save_message(&dir, t, &m) {
                    Ok(()) => saved += 1,
                    Err(e) => {
                        failed = Some(e);
                        return ControlFlow::Break(());
                    }
                }
            }
            on_record(r)
        };
        let summary = match self.input {
            Input::File(path) => tap::dissect_file_with_messages(&path, &mut each)?,
            Input::Stream { name, input } => tap::dissect_with_messages(&name, input, true, &mut each)?,
        };
        if let Some(e) = failed {
            return Err(e);
        }
        eprintln!("{saved} messages seen whole written to {}", dir.display());
        Ok(summary)
    }
}

/// Writes one message as the eavesdropper reassembled it (dot-unstuffed, CRLF line ends), named
/// by its session and transaction: `<uid>-<trans_depth>.eml`, a file any mail client opens and
/// whose sha256 is the transaction's.
fn save_message(dir: &Path, t: &TapTransaction, message: &[u8]) -> Result<()> {
    // The uid is the tap's own (C + hex), never a name from the wire.
    let path = dir.join(format!("{}-{}.eml", t.uid, t.trans_depth));
    std::fs::write(&path, message).with_context(|| format!("cannot write {}", path.display()))
}

/// Reads the packets and writes their records in the chosen format.
fn dissect(source: Source, args: &TapArgs) -> Result<ExitCode> {
    let summary = match args.format {
        TapFormat::Jsonl => jsonl(source)?,
        TapFormat::Table => table(source)?,
        TapFormat::Parquet => parquet(source, args.out.as_deref().unwrap_or(Path::new(".")))?,
    };
    let f = &summary.defrag;
    if !matches!(args.format, TapFormat::Table) && f.incomplete + f.dropped > 0 {
        // Records on standard output stay pure; the loss goes to standard error.
        eprintln!(
            "note: {} IP datagrams incomplete and {} dropped (of {} fragments): their segments are gaps",
            f.incomplete, f.dropped, f.fragments
        );
    }
    if summary.failed_flows > 0 {
        eprintln!(
            "warning: the dissection of {} TCP sessions failed on a bug (their records are missing; the others are \
             complete): please report it with the capture",
            summary.failed_flows
        );
    }
    if let Some(e) = summary.error {
        eprintln!("error: {e}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes each record as it comes; a closed standard output (`| head`) ends the read quietly.
fn jsonl(source: Source) -> Result<tap::ReadSummary> {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut failed: Option<std::io::Error> = None;
    let live = source.is_stream();
    let summary = source.read(|r| match write_record(&mut out, &r).and_then(|()| flush_if(live, &mut out)) {
        Ok(()) => ControlFlow::Continue(()),
        Err(e) => {
            failed = Some(e);
            ControlFlow::Break(())
        }
    })?;
    let flushed = out.flush();
    match failed.map_or(flushed, Err) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.context("writing to standard output")?,
    }
    Ok(summary)
}

/// A stream's records are for someone watching: each goes out as it is found, not when a
/// buffer fills.
fn flush_if(live: bool, out: &mut impl Write) -> std::io::Result<()> {
    if live { out.flush() } else { Ok(()) }
}

fn write_record(out: &mut impl Write, r: &TapRecord) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, r)?;
    out.write_all(b"\n")
}

/// Each session (with its transactions) as it ends, then the totals and the volume table.
fn table(source: Source) -> Result<tap::ReadSummary> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut volume = Volume::default();
    let mut failed: Option<std::io::Error> = None;
    let live = source.is_stream();
    let summary = source.read(|r| {
        let written = match &r {
            TapRecord::Session(s) => {
                volume.add(s);
                writeln!(out, "{}", session_line(s))
            }
            TapRecord::Transaction(t) => writeln!(out, "{}", transaction_line(t)),
        }
        .and_then(|()| flush_if(live, &mut out));
        match written {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    let written = (|| {
        if let Some(e) = failed {
            return Err(e);
        }
        writeln!(
            out,
            "\n{}, {}, {} in the clear",
            count(summary.packets, "packet"),
            count(volume.sessions, "SMTP session"),
            count(volume.transactions, "transaction")
        )?;
        let f = &summary.defrag;
        if f.fragments > 0 {
            writeln!(
                out,
                "{} IP fragments: {} datagrams reassembled, {} incomplete, {} dropped (memory bounds), {} overlaps with other content",
                f.fragments, f.reassembled, f.incomplete, f.dropped, f.overlaps
            )?;
        }
        writeln!(out, "\n{}", volume.render())?;
        out.flush()
    })();
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.context("writing to standard output")?,
    }
    Ok(summary)
}

fn session_line(s: &TapSession) -> String {
    let tls = if s.starttls_used {
        format!("STARTTLS {} {}", s.tls_version.as_deref().unwrap_or("?"), s.tls_cipher.as_deref().unwrap_or(""))
    } else if s.starttls_offered {
        "offered, not used".into()
    } else {
        "plaintext".into()
    };
    format!(
        "{} {}:{} -> {}:{} helo={} {} bytes {}/{} tx={}{}",
        s.uid,
        s.orig_h,
        s.orig_p,
        s.resp_h,
        s.resp_p,
        s.helo.as_deref().map_or("-".into(), shown),
        tls.trim_end(),
        s.orig_bytes,
        s.resp_bytes,
        s.transactions,
        if s.notes.is_empty() { String::new() } else { format!(" [{}]", s.notes.join(",")) }
    )
}

fn transaction_line(t: &TapTransaction) -> String {
    if t.tls {
        return format!("    #{} (in TLS: envelope and content not visible)", t.trans_depth);
    }
    format!(
        "    #{} {} -> {} subject={:?} bytes={} sha256={}",
        t.trans_depth,
        t.mailfrom.as_deref().map_or("-".into(), shown),
        t.rcptto.iter().map(|r| shown(r)).collect::<Vec<_>>().join(","),
        t.subject.as_deref().unwrap_or(""),
        t.message_bytes.map(|b| b.to_string()).unwrap_or_else(|| "-".into()),
        t.sha256.as_deref().and_then(|h| h.get(..12)).unwrap_or("-"),
    )
}

/// What the eavesdropper learns per ordered pair of endpoints (client address → server
/// address), with or without STARTTLS: how many sessions, how many bytes each way, how many
/// transactions it could read, and the names it can put on both ends.
#[derive(Default)]
struct Volume {
    pairs: BTreeMap<(String, String), Pair>,
    sessions: u64,
    transactions: u64,
}

#[derive(Default)]
struct Pair {
    sessions: u64,
    starttls: u64,
    orig_bytes: u64,
    resp_bytes: u64,
    transactions: u64,
    /// EHLO/HELO names the client gave.
    helo: BTreeSet<String>,
    /// Names the server gave in its greeting or EHLO reply.
    server: BTreeSet<String>,
    /// TLS server names the client asked for.
    sni: BTreeSet<String>,
    /// Names in the server certificates sent in the clear (TLS 1.2): DNS names of the
    /// subjectAltName, else the subject's CN.
    cert: BTreeSet<String>,
}

/// Distinct names kept per pair and column (a hostile peer could send a new name each time).
const MAX_NAMES: usize = 8;

fn remember(set: &mut BTreeSet<String>, name: Option<&str>) {
    if let Some(n) = name.filter(|n| !n.is_empty())
        && (set.len() < MAX_NAMES || set.contains(n))
    {
        set.insert(n.to_string());
    }
}

impl Volume {
    fn add(&mut self, s: &TapSession) {
        // The tap records every TCP session it sees; the volume is that of SMTP sessions.
        if s.notes.iter().any(|n| n == "not_smtp" || n == "no_payload") {
            return;
        }
        self.sessions += 1;
        self.transactions += s.transactions;
        let p = self.pairs.entry((s.orig_h.clone(), s.resp_h.clone())).or_default();
        p.sessions += 1;
        p.starttls += u64::from(s.starttls_used);
        p.orig_bytes += s.orig_bytes;
        p.resp_bytes += s.resp_bytes;
        p.transactions += s.transactions;
        remember(&mut p.helo, s.helo.as_deref());
        remember(&mut p.server, s.server_name.as_deref());
        remember(&mut p.sni, s.sni.as_deref());
        if s.cert_san_dns.is_empty() {
            remember(&mut p.cert, s.cert_subject.as_deref().and_then(common_name));
        }
        for name in &s.cert_san_dns {
            remember(&mut p.cert, Some(name));
        }
    }

    /// The table as rows for `volume.parquet`.
    fn rows(&self) -> Vec<analysis::VolumeRow> {
        let list = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>();
        self.pairs
            .iter()
            .map(|((client, server), p)| analysis::VolumeRow {
                client: client.clone(),
                server: server.clone(),
                sessions: p.sessions,
                starttls_sessions: p.starttls,
                orig_bytes: p.orig_bytes,
                resp_bytes: p.resp_bytes,
                transactions: p.transactions,
                helo_names: list(&p.helo),
                server_names: list(&p.server),
                sni: list(&p.sni),
                cert_names: list(&p.cert),
            })
            .collect()
    }

    fn render(&self) -> String {
        let header = [
            "client",
            "server",
            "sessions",
            "STARTTLS",
            "bytes c->s",
            "bytes s->c",
            "tx in clear",
            "client names (EHLO)",
            "server names (banner/EHLO)",
            "SNI",
            "certificate names",
        ];
        // EHLO and banner names are raw text from the wire; SNI and certificate names come
        // escaped from the tap already.
        let names = |set: &BTreeSet<String>, raw: bool| {
            if set.is_empty() {
                "-".to_string()
            } else {
                let mut s = set.iter().map(|n| if raw { shown(n) } else { n.clone() }).collect::<Vec<_>>().join(",");
                if set.len() >= MAX_NAMES {
                    s.push_str(",...");
                }
                s
            }
        };
        let rows: Vec<[String; 11]> = self
            .pairs
            .iter()
            .map(|((c, s), p)| {
                [
                    c.clone(),
                    s.clone(),
                    p.sessions.to_string(),
                    p.starttls.to_string(),
                    human_bytes(p.orig_bytes),
                    human_bytes(p.resp_bytes),
                    p.transactions.to_string(),
                    names(&p.helo, true),
                    names(&p.server, true),
                    names(&p.sni, false),
                    names(&p.cert, false),
                ]
            })
            .collect();
        let mut width = header.map(str::len);
        for r in &rows {
            for (w, cell) in width.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        // Numbers right-aligned, text left-aligned; the last column is not padded.
        let numeric = [false, false, true, true, true, true, true, false, false, false, false];
        let line = |cells: &[String]| {
            let mut l = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i > 0 {
                    l.push_str("  ");
                }
                let pad = width[i].saturating_sub(cell.chars().count());
                if numeric[i] {
                    l.push_str(&" ".repeat(pad));
                    l.push_str(cell);
                } else {
                    l.push_str(cell);
                    if i + 1 < cells.len() {
                        l.push_str(&" ".repeat(pad));
                    }
                }
            }
            l
        };
        let mut out = String::from(
            "System-to-system volume (per ordered pair of endpoints; visible with or without STARTTLS):\n",
        );
        out.push_str(&line(&header.map(String::from)));
        out.push('\n');
        if rows.is_empty() {
            out.push_str("(no SMTP sessions)\n");
        }
        for r in &rows {
            out.push_str(&line(r));
            out.push('\n');
        }
        out
    }
}

/// Text from the wire as the table shows it: control characters (an ESC would drive the
/// terminal) and `\` written `\xNN`, as the records write certificate names.
fn shown(text: &str) -> String {
    tap::tls::escape_text(text.as_bytes())
}

/// The CN of a certificate subject as the records write it (RFC 2253: `,` between attributes, a
/// `\,` inside a value), still escaped.
fn common_name(subject: &str) -> Option<&str> {
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in subject.char_indices().chain(std::iter::once((subject.len(), ','))) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                if let Some(cn) = subject[start..i].strip_prefix("CN=") {
                    return Some(cn);
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    None
}

/// `1 packet`, `2 packets`.
fn count(n: u64, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 { format!("{b} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

/// Streams the records into `out/sessions.parquet`, `out/transactions.parquet` and
/// `out/tls_records.parquet` a row group at a time, with the schemas of a run's `tap/*.parquet`.
fn parquet(source: Source, out: &Path) -> Result<tap::ReadSummary> {
    let (sessions, transactions) = (out.join("sessions.parquet"), out.join("transactions.parquet"));
    let volume_path = out.join("volume.parquet");
    let tls_records = out.join("tls_records.parquet");
    let mut tables = analysis::TapTableWriter::create(&sessions, &transactions, &tls_records)?;
    let mut volume = Volume::default();
    let mut failed: Option<analysis::AnalysisError> = None;
    let summary = source.read(|r| {
        if let TapRecord::Session(s) = &r {
            volume.add(s);
        }
        match tables.push(r) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    // Finished even when the capture ended in an error: the records found before it are kept.
    tables.finish()?;
    analysis::write_volume_table(&volume.rows(), &volume_path)?;
    eprintln!(
        "{}, {}: {}, {}, {} and {}",
        count(summary.sessions, "SMTP session"),
        count(summary.transactions, "transaction"),
        sessions.display(),
        transactions.display(),
        tls_records.display(),
        volume_path.display()
    );
    Ok(summary)
}

/// The first Ctrl-C stops a live capture (what was captured is dissected); a second one ends
/// the process at once.
fn on_interrupt() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let seen = flag.clone();
    let installed = ctrlc::set_handler(move || {
        if seen.swap(true, Ordering::SeqCst) {
            eprintln!("second interrupt: exiting now");
            std::process::exit(130);
        }
        eprintln!("interrupted: stopping the capture and finishing the open sessions (Ctrl-C again to quit now)");
    });
    if let Err(e) = installed {
        eprintln!("warning: Ctrl-C will not stop the capture cleanly ({e})");
    }
    flag
}

/// Captures on `iface` into a pcap file until Ctrl-C or `--duration`, then dissects it.
fn live(args: &TapArgs, iface: &str) -> Result<ExitCode> {
    // Checked before the capture starts: a duration no clock holds would fail later, mid-capture.
    let limit = match args.duration {
        Some(d) => match Duration::try_from_secs_f64(d) {
            Ok(l) if d.is_finite() && d > 0.0 => Some(l),
            _ => bail!("--duration must be a positive number of seconds (at most about 1.8e19), not {d:?}"),
        },
        None => None,
    };
    let opts = tap::LiveOptions {
        device: iface.to_string(),
        filter: args.filter.clone().unwrap_or_else(|| "tcp".into()),
        snaplen: args.snaplen,
        ..Default::default()
    };
    let stop = on_interrupt();
    let (capture, stream) = match tap::LiveCapture::start_streaming(&opts, args.write.as_deref()) {
        Ok(c) => c,
        Err(e @ tap::TapError::NoCapturePermission { .. }) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    match args.duration {
        Some(d) => eprintln!("capturing on {iface} ({}) for {d} s; Ctrl-C stops earlier", opts.filter),
        None => eprintln!("capturing on {iface} ({}); Ctrl-C stops", opts.filter),
    }
    // The capture is stopped from its own thread (at Ctrl-C, at --duration, or when the
    // dissection ends first), while this one dissects the packets as they come.
    let stopper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            while !stop.load(Ordering::SeqCst) && limit.is_none_or(|l| started.elapsed() < l) {
                std::thread::sleep(Duration::from_millis(20));
            }
            capture.stop()
        })
    };
    let input = Input::Stream { name: format!("live capture on {iface}"), input: Box::new(stream) };
    let dissected = dissect(Source { input, extract: args.extract.clone() }, args);
    stop.store(true, Ordering::SeqCst);
    let stats = stopper.join().map_err(|_| anyhow::anyhow!("the capture thread panicked"))??;
    eprintln!(
        "captured {} packets, {} bytes ({} dropped by the kernel){}",
        stats.packets_written,
        stats.bytes_written,
        stats.dropped,
        args.write.as_ref().map(|p| format!(" into {}", p.display())).unwrap_or_default()
    );
    dissected
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(orig: &str, resp: &str, tls: bool, helo: &str) -> TapSession {
        TapSession {
            orig_h: orig.into(),
            resp_h: resp.into(),
            helo: Some(helo.into()),
            server_name: Some(format!("mx.{resp}")),
            sni: tls.then(|| format!("mx.{resp}")),
            cert_subject: tls.then(|| format!("CN=cert.{resp},O=Example\\, Inc.,C=US")),
            starttls_used: tls,
            orig_bytes: 1500,
            resp_bytes: 300,
            transactions: u64::from(!tls),
            ..Default::default()
        }
    }

    #[test]
    fn volume_table_counts_each_ordered_pair_with_inferred_names() {
        let mut v = Volume::default();
        v.add(&session("10.0.1.1", "10.0.2.1", true, "a.example"));
        v.add(&session("10.0.1.1", "10.0.2.1", true, "a.example"));
        v.add(&session("10.0.2.1", "10.0.1.1", false, "b.example"));
        let t = v.render();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[1].starts_with("client"), "{t}");
        let ab: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            ab,
            [
                "10.0.1.1",
                "10.0.2.1",
                "2",
                "2",
                "3.0",
                "kB",
                "600",
                "B",
                "0",
                "a.example",
                "mx.10.0.2.1",
                "mx.10.0.2.1",
                "cert.10.0.2.1"
            ]
        );
        let ba: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(
            ba,
            ["10.0.2.1", "10.0.1.1", "1", "0", "1.5", "kB", "300", "B", "1", "b.example", "mx.10.0.1.1", "-", "-"]
        );
        assert_eq!((v.sessions, v.transactions), (3, 1));
    }

    #[test]
    fn certificate_names_are_the_san_dns_names_else_the_cn() {
        let mut v = Volume::default();
        let mut s = session("10.0.1.1", "10.0.2.1", true, "a.example");
        s.cert_san_dns = vec!["mx.b.example".into(), "mail.b.example".into()];
        v.add(&s);
        let p = v.pairs.values().next().expect("one pair");
        assert_eq!(p.cert.iter().map(String::as_str).collect::<Vec<_>>(), ["mail.b.example", "mx.b.example"]);
        assert_eq!(common_name("O=x,CN=y"), Some("y"));
        assert_eq!(common_name("O=x"), None);
        assert_eq!(common_name("O=a\\,CN=b,CN=mx\\,1,C=DE"), Some("mx\\,1"));
        assert_eq!(shown("mx\u{1b}[31m"), "mx\\x1b[31m");
    }

    #[test]
    fn names_per_pair_are_bounded() {
        let mut v = Volume::default();
        for i in 0..100 {
            v.add(&session("10.0.1.1", "10.0.2.1", false, &format!("h{i}")));
        }
        let p = v.pairs.values().next().expect("one pair");
        assert_eq!(p.helo.len(), MAX_NAMES);
        assert!(v.render().contains(",..."));
    }

    #[test]
    fn bytes_read_as_a_person_would() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1500), "1.5 kB");
        assert_eq!(human_bytes(2_300_000_000), "2.3 GB");
    }
}
