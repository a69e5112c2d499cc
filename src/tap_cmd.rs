//! `smtplab tap`: the eavesdropper on its own, on a capture file or live on an interface.
//!
//! Records are streamed from the tap ([`tap::stream_file`], [`tap::stream_reader`])
//! as each TCP session ends, from a file, from standard input or from a live capture, so any
//! amount of traffic is read in bounded memory: JSON lines are written as they come, the
//! table prints each session as it ends and the system-to-system volume table at the end, and
//! Parquet tables are written a row group at a time. A corrupt or truncated
//! capture ends the read with an error naming the file and byte offset; the records found
//! before it are output, and the exit code is 1.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use records::{TapRecord, TapTransaction};
use tap::volume::Volume;

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

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum TapFormat {
    /// One JSON object per line, `record` = "session" or "transaction".
    Jsonl,
    /// A human summary: each session, then the system-to-system volume table.
    Table,
    /// sessions.parquet and transactions.parquet in --out (a run's tap/*.parquet schemas).
    Parquet,
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
                Input::File(path) => tap::stream_file(&path, tap::Options::default(), |r, _| on_record(r))?,
                Input::Stream { name, input } => {
                    tap::stream_reader(&name, input, tap::Options { live: true, messages: false }, |r, _| on_record(r))?
                }
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
            Input::File(path) => tap::stream_file(&path, tap::Options { live: false, messages: true }, &mut each)?,
            Input::Stream { name, input } => {
                tap::stream_reader(&name, input, tap::Options { live: true, messages: true }, &mut each)?
            }
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
                writeln!(out, "{}", tap::table_lines::session(s))
            }
            TapRecord::Transaction(t) => writeln!(out, "{}", tap::table_lines::transaction(t)),
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

/// `1 packet`, `2 packets`.
fn count(n: u64, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
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
