//! The fuzz targets on stable: the seed corpus in `tests/data/corpus/<target>/` (described in
//! its README.md), then a few thousand deterministic pseudo-random mutations of the real
//! captures and of the corpus, through the same `tap::fuzzing` functions the cargo-fuzz targets
//! in `tap/fuzz/` call. Passing means: no panic, no hang, on any of them.

use std::path::{Path, PathBuf};

use tap::fuzzing::{fuzz_dissect_pcap, fuzz_message, fuzz_smtp_stream, fuzz_tls_walk};

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("dissect_pcap", fuzz_dissect_pcap),
    ("smtp_stream", fuzz_smtp_stream),
    ("tls_walk", fuzz_tls_walk),
    ("message", fuzz_message),
];

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files.into_iter().map(|p| (p.clone(), std::fs::read(&p).expect("corpus file readable"))).collect()
}

fn captures() -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/pcaps");
    let mut out = Vec::new();
    for sub in ["zeek", "ndpi"] {
        for e in std::fs::read_dir(root.join(sub)).expect("pcaps dir").filter_map(Result::ok) {
            let p = e.path();
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            // The two large traces are mutated through their first 40 KiB only, to keep the
            // test fast; their full form is read by the parity tests.
            if p.is_file() && (name.ends_with(".pcap") || name.ends_with(".pcapng")) {
                let mut b = std::fs::read(&p).expect("capture readable");
                b.truncate(40 << 10);
                out.push((p, b));
            }
        }
    }
    out.sort();
    out
}

/// xorshift64*: deterministic, so a failure names a reproducible case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

/// One to four edits: bit flips, interesting bytes, truncation, duplication, deletion, and
/// 32-bit fields set to boundary values (lengths in pcap and TLS headers).
fn mutate(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(b.len().max(1));
        match rng.below(7) {
            0 if !b.is_empty() => b[at] ^= 1 << rng.below(8),
            1 if !b.is_empty() => b[at] = [0, 0xff, b'\r', b'\n', b'.', b' ', 0x16, 0x7f][rng.below(8)],
            2 => b.truncate(at),
            3 => {
                let len = rng.below(64).min(b.len() - at.min(b.len()));
                let chunk = b[at.min(b.len())..at.min(b.len()) + len].to_vec();
                let to = rng.below(b.len() + 1);
                b.splice(to..to, chunk);
            }
            4 => {
                let end = (at + rng.below(32)).min(b.len());
                b.drain(at.min(end)..end);
            }
            5 if b.len() >= 4 => {
                let at = at.min(b.len() - 4);
                let v: u32 = [0, 1, 0x7fff_ffff, 0xffff_ffff, 0x0001_0000, 12][rng.below(6)];
                b[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
            _ => b.insert(at.min(b.len()), rng.below(256) as u8),
        }
    }
    b
}

#[test]
fn seed_corpus_replays() {
    for (name, target) in TARGETS {
        let files = corpus(name);
        assert!(!files.is_empty(), "{name}: corpus has seeds");
        for (path, bytes) in files {
            eprintln!("{name}: {}", path.display());
            target(&bytes);
        }
    }
}

#[test]
fn real_captures_and_their_mutations_never_panic() {
    let caps = captures();
    assert!(caps.len() >= 20);
    let mut rng = Rng(0x005e_ed0f_5a7b_1ab5);
    let mut runs = 0;
    // FUZZ_ROUNDS=N runs N mutations per capture (a longer local run); 150 by default.
    let rounds: usize = std::env::var("FUZZ_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(150);
    for (path, bytes) in &caps {
        fuzz_dissect_pcap(bytes);
        for i in 0..rounds {
            let m = mutate(bytes, &mut rng);
            std::panic::catch_unwind(|| fuzz_dissect_pcap(&m))
                .unwrap_or_else(|_| panic!("{} mutation {i} panics (seeded, reproducible)", path.display()));
            runs += 1;
        }
    }
    assert!(runs >= 20 * rounds, "{runs}");
}

#[test]
fn corpus_mutations_never_panic() {
    let mut rng = Rng(0x0ddb_a11c_afe0);
    let rounds: usize = std::env::var("FUZZ_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    for (name, target) in TARGETS {
        for (path, bytes) in corpus(name) {
            for i in 0..rounds {
                let m = mutate(&bytes, &mut rng);
                std::panic::catch_unwind(|| target(&m))
                    .unwrap_or_else(|_| panic!("{name} {} mutation {i} panics", path.display()));
            }
        }
    }
    // Raw pseudo-random bytes too.
    for len in [0, 1, 2, 3, 5, 8, 24, 64, 300] {
        for _ in 0..20 {
            let b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            for (_, target) in TARGETS {
                target(&b);
            }
        }
    }
}
