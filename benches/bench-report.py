#!/usr/bin/env python3
"""Turns criterion's saved estimates into Markdown: what STARTTLS costs over plaintext.

Reads every `<criterion dir>/**/new/benchmark.json` (ids) and the `estimates.json` beside it
(mean point estimate and its 95% confidence interval, in nanoseconds) that
`cargo bench -p smtplab-benches` leaves behind, and prints:

  1. STARTTLS cost over plaintext on a new connection, per message size, against the issue's
     target: starttls_new <= plain_new + 1.2 x the bare in-memory rustls handshake of the same
     kind (full: tls_handshake/full/TLS1.3-X25519-ECDSA-P256, resumed:
     tls_handshake/resumed/TLS1.3-X25519-ECDSA-P256).
  2. The same on a reused connection, against: starttls_reused(10KB) <= 1.1 x plain_reused(10KB).
  3. Handshakes per second; record protection throughput; parser throughput.
  4. With --openssl FILE (written by benches/compare/openssl-speed.sh): record protection next
     to `openssl speed` and the ratio (target: at least 80%).

Python 3 standard library only.

  python3 benches/bench-report.py                       # Markdown to stdout
  python3 benches/bench-report.py -o BENCHMARKS-overhead.md
  python3 benches/bench-report.py --criterion /var/cache/smtplab-target-bench/criterion
  python3 benches/bench-report.py --stat min            # fastest samples (shared machine)
"""

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

HS_FULL = "tls_handshake/full/TLS1.3-X25519-ECDSA-P256"
HS_RESUMED = "tls_handshake/resumed/TLS1.3-X25519-ECDSA-P256"
SIZES = ["1KB", "10KB", "100KB", "10MB"]
SUITES = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"]
OPENSSL_NAME = {
    "TLS_AES_128_GCM_SHA256": "aes-128-gcm",
    "TLS_AES_256_GCM_SHA384": "aes-256-gcm",
    "TLS_CHACHA20_POLY1305_SHA256": "chacha20-poly1305",
}
SIZE_BYTES = {"1KB": 1024, "10KB": 10240, "16KB": 16384, "100KB": 102400, "1MB": 1 << 20, "10MB": 10 << 20}
STAT_NAME = {
    "mean": "criterion's mean point estimate",
    "median": "criterion's median point estimate",
    "min": "the fastest sample (time per iteration), an estimate of the uncontended cost",
}
NEW_CONN_FACTOR = 1.2
REUSED_FACTOR = 1.1
OPENSSL_TARGET = 0.8


def default_criterion_dir():
    target = os.environ.get("CARGO_TARGET_DIR")
    if target:
        return Path(target) / "criterion"
    return Path(__file__).resolve().parent.parent / "target" / "criterion"


class Estimate:
    """`mean` holds the statistic chosen with --stat (criterion's mean by default)."""

    def __init__(self, mean, low, high, throughput):
        self.mean, self.low, self.high, self.throughput = mean, low, high, throughput

    def bytes_per_sec(self):
        if self.throughput and "Bytes" in self.throughput:
            return self.throughput["Bytes"] / (self.mean * 1e-9)
        return None

    def per_sec(self):
        return 1e9 / self.mean


def load(criterion_dir, stat="mean"):
    """{full_id: Estimate} for every benchmark with a `new` estimate."""
    out = {}
    for bench in Path(criterion_dir).rglob("new/benchmark.json"):
        est_path = bench.parent / "estimates.json"
        if not est_path.exists():
            continue
        meta = json.loads(bench.read_text())
        est = json.loads(est_path.read_text())
        if stat == "min":
            # The fastest sample (time per iteration): the best estimate of the uncontended
            # cost on a shared machine, where most samples include time spent preempted.
            samples = json.loads((bench.parent / "sample.json").read_text())
            fastest = min(t / n for t, n in zip(samples["times"], samples["iters"]) if n > 0)
            mean = {"point_estimate": fastest}
        else:
            mean = est[stat]
        ci = mean.get("confidence_interval", {})
        parts = [meta.get("group_id"), meta.get("function_id"), meta.get("value_str")]
        full_id = "/".join(p for p in parts if p)
        out[full_id] = Estimate(
            mean["point_estimate"],
            ci.get("lower_bound", mean["point_estimate"]),
            ci.get("upper_bound", mean["point_estimate"]),
            meta.get("throughput"),
        )
    return out


def fmt_time(ns):
    if ns is None:
        return "n/a"
    if ns < 0:
        return "-" + fmt_time(-ns)
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns:.0f} ns"


def fmt_rate(bps):
    if bps is None:
        return "n/a"
    if bps >= 1e9:
        return f"{bps / 1e9:.2f} GB/s"
    return f"{bps / 1e6:.1f} MB/s"


def mean(est, key):
    e = est.get(key)
    return e.mean if e else None


def verdict(ok):
    return "n/a" if ok is None else ("**met**" if ok else "**not met**")


def new_connection_table(est):
    hs_full, hs_res = mean(est, HS_FULL), mean(est, HS_RESUMED)
    lines = [
        "### STARTTLS on a new connection",
        "",
        f"Target: `starttls_new <= plain_new + {NEW_CONN_FACTOR} x bare handshake of the same kind`. "
        f"Bare handshakes (in memory, both sides, one core): full `{HS_FULL}` = {fmt_time(hs_full)}, "
        f"resumed `{HS_RESUMED}` = {fmt_time(hs_res)}.",
        "",
        "| size | plain_new | starttls_new (full) | STARTTLS cost | budget | target | "
        "starttls_new_resumed | STARTTLS cost | budget | target |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size in SIZES:
        plain = mean(est, f"smtp_transaction/plain_new/{size}")
        row = [size, fmt_time(plain)]
        for variant, hs in (("starttls_new", hs_full), ("starttls_new_resumed", hs_res)):
            tls = mean(est, f"smtp_transaction/{variant}/{size}")
            if None in (plain, tls, hs):
                row += [fmt_time(tls), "n/a", "n/a", "n/a"]
                continue
            cost = tls - plain
            budget = NEW_CONN_FACTOR * hs
            row += [
                fmt_time(tls),
                f"{fmt_time(cost)} ({cost / hs:.1f}x hs)",
                f"{fmt_time(budget)}",
                verdict(cost <= budget),
            ]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def reused_table(est):
    lines = [
        "### STARTTLS on a reused connection",
        "",
        f"Target: `starttls_reused(10KB) <= {REUSED_FACTOR} x plain_reused(10KB)`.",
        "",
        "| size | plain_reused | starttls_reused | ratio | target (10KB only) |",
        "|---|---|---|---|---|",
    ]
    for size in SIZES:
        plain = mean(est, f"smtp_transaction/plain_reused/{size}")
        tls = mean(est, f"smtp_transaction/starttls_reused/{size}")
        ratio = tls / plain if plain and tls else None
        target = verdict(ratio <= REUSED_FACTOR if ratio is not None else None) if size == "10KB" else ""
        r = f"{ratio:.3f}" if ratio is not None else "n/a"
        lines.append(f"| {size} | {fmt_time(plain)} | {fmt_time(tls)} | {r} | {target} |")
    return lines


def handshake_table(est):
    lines = ["### TLS handshakes (in memory, rustls + ring)", "", "| id | mean | handshakes/s |", "|---|---|---|"]
    for key in sorted(k for k in est if k.startswith("tls_handshake/")):
        e = est[key]
        lines.append(f"| `{key}` | {fmt_time(e.mean)} | {e.per_sec():,.0f} |")
    return lines


def record_table(est):
    lines = [
        "### Record protection (TLS 1.3, in memory)",
        "",
        "| suite | size | seal | seal throughput | open | open throughput |",
        "|---|---|---|---|---|---|",
    ]
    for suite in SUITES:
        for size in ["1KB", "16KB", "1MB"]:
            s = est.get(f"record_protection/seal/{suite}/{size}")
            o = est.get(f"record_protection/open/{suite}/{size}")
            lines.append(
                f"| {suite} | {size} | {fmt_time(s.mean if s else None)} | {fmt_rate(s.bytes_per_sec() if s else None)} "
                f"| {fmt_time(o.mean if o else None)} | {fmt_rate(o.bytes_per_sec() if o else None)} |"
            )
    return lines


def parser_table(est):
    lines = ["### Parsers and the tap's dissector", "", "| id | mean | throughput |", "|---|---|---|"]
    for key in sorted(k for k in est if k.startswith(("parsers/", "tap_dissect/"))):
        e = est[key]
        lines.append(f"| `{key}` | {fmt_time(e.mean)} | {fmt_rate(e.bytes_per_sec())} |")
    return lines


def load_openssl(path):
    """TSV lines `cipher<TAB>mode<TAB>bytes<TAB>bytes_per_second` from openssl-speed.sh; `#`
    lines (OpenSSL version, clock, date, load) are kept under the key "notes"."""
    out = {"notes": []}
    for line in Path(path).read_text().splitlines():
        if line.startswith("#"):
            out["notes"].append(line.lstrip("# ").strip())
            continue
        if not line.strip():
            continue
        cipher, mode, size, bps = line.split("\t")
        out[(cipher, mode, int(size))] = float(bps)
    return out


def openssl_table(est, ossl):
    lines = [
        "### Record protection vs `openssl speed` (same machine, same session)",
        "",
        f"Ratio = rustls throughput / OpenSSL throughput; target at least {OPENSSL_TARGET:.0%}. "
        "`evp` = `openssl speed -evp <cipher>` (bulk encryption, one IV for the whole run); "
        "`aead` = `openssl speed -aead -evp <cipher>` (per buffer: new IV, AAD, tag: like a TLS record); "
        "`aead-dec` = the same with `-decrypt`. rustls seal/open include record framing and the "
        "plaintext copies in and out. 1MB rows compare 64 full 16 KB records with OpenSSL's 16384-byte buffers.",
        "",
    ]
    lines += [f"OpenSSL run: {n}" for n in ossl.get("notes", [])]
    lines += [
        "",
        "| suite | ours | provider | rustls | openssl mode, buffer | OpenSSL | ratio | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    pairs = [
        ("seal", "1KB", "evp", 1024),
        ("seal", "1KB", "aead", 1024),
        ("open", "1KB", "aead-dec", 1024),
        ("seal", "16KB", "evp", 16384),
        ("seal", "16KB", "aead", 16384),
        ("open", "16KB", "aead-dec", 16384),
        ("seal", "1MB", "aead", 16384),
        ("open", "1MB", "aead-dec", 16384),
    ]
    for suite in SUITES:
        for op, size, mode, obytes in pairs:
            for provider, prefix in PROVIDERS:
                e = est.get(f"record_protection/{prefix}{op}/{suite}/{size}")
                if e is None and prefix:
                    continue  # that provider was not benched in this run: no row rather than n/a
                ours = e.bytes_per_sec() if e else None
                theirs = ossl.get((OPENSSL_NAME[suite], mode, obytes))
                ratio = ours / theirs if ours and theirs else None
                r = f"{ratio:.0%}" if ratio is not None else "n/a"
                ok = verdict(ratio >= OPENSSL_TARGET if ratio is not None else None)
                lines.append(
                    f"| {suite} | {op} {size} | {provider} | {fmt_rate(ours)} | {mode}, {obytes} B "
                    f"| {fmt_rate(theirs)} | {r} | {ok} |"
                )
    return lines


# rustls crypto providers benched side by side: the id prefix each one's record-protection ids
# carry (benches/benches/record_protection.rs).
PROVIDERS = [("ring", ""), ("aws-lc-rs", "aws-lc-rs/")]


def provider_table(est):
    """ring against aws-lc-rs, same run: handshakes (tls_handshake/provider_*) and record
    protection, with the aws-lc-rs/ring speed ratio (above 1: aws-lc-rs is faster)."""
    lines = [
        "### rustls providers: ring against aws-lc-rs (same run)",
        "",
        "| what | ring | aws-lc-rs | aws-lc-rs speed / ring speed |",
        "|---|---|---|---|",
    ]
    for kind in ("provider_full", "provider_resumed"):
        r = est.get(f"tls_handshake/{kind}/ring-TLS1.3-X25519-ECDSA-P256")
        a = est.get(f"tls_handshake/{kind}/aws-lc-rs-TLS1.3-X25519-ECDSA-P256")
        if r and a:
            lines.append(f"| {kind} TLS1.3-X25519-ECDSA-P256 | {fmt_time(r.mean)} | {fmt_time(a.mean)} | {r.mean / a.mean:.2f} |")
        h = est.get(f"tls_handshake/{kind}/aws-lc-rs-TLS1.3-X25519MLKEM768-ECDSA-P256")
        if a and h:
            lines.append(
                f"| {kind} X25519MLKEM768 (aws-lc-rs only) | | {fmt_time(h.mean)} | "
                f"{a.mean / h.mean:.2f} of X25519's speed |"
            )
    for suite in SUITES:
        for op in ("seal", "open"):
            for size in ("1KB", "16KB", "1MB"):
                r = est.get(f"record_protection/{op}/{suite}/{size}")
                a = est.get(f"record_protection/aws-lc-rs/{op}/{suite}/{size}")
                if r and a:
                    rr, ar = r.bytes_per_sec(), a.bytes_per_sec()
                    lines.append(f"| {op} {suite} {size} | {fmt_rate(rr)} | {fmt_rate(ar)} | {ar / rr:.2f} |")
    return lines


def overhead_svg(est):
    """A grouped bar chart (SVG, no dependencies): STARTTLS time over plaintext time per message
    size, on a new connection (full handshake) and on a reused one. 1.0 means free."""
    series = [("new connection", "plain_new", "starttls_new", "#0072b2"),
              ("reused connection", "plain_reused", "starttls_reused", "#d55e00")]
    ratios = []
    for size in SIZES:
        row = []
        for _, plain_id, tls_id, _ in series:
            plain = mean(est, f"smtp_transaction/{plain_id}/{size}")
            tls = mean(est, f"smtp_transaction/{tls_id}/{size}")
            row.append(tls / plain if plain and tls else None)
        ratios.append(row)
    top = max([r for row in ratios for r in row if r is not None] + [1.2])
    top = float(int(top * 2 + 1)) / 2  # round up to a half
    w, h, left, bottom, plot_h = 720, 400, 70, 60, 280
    group_w = (w - left - 20) / len(SIZES)
    bar_w = group_w / (len(series) + 1)
    y = lambda v: 40 + plot_h * (1 - v / top)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="DejaVu Sans, sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           '<text x="20" y="22" font-size="15">STARTTLS time / plaintext time per SMTP transaction, by message size</text>']
    tick = 0.0
    while tick <= top + 1e-9:
        out.append(f'<line x1="{left}" x2="{w - 20}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 8}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:.1f}</text>')
        tick += 0.5
    out.append(f'<line x1="{left}" x2="{w - 20}" y1="{y(1.0):.1f}" y2="{y(1.0):.1f}" stroke="#333" stroke-dasharray="4 3"/>')
    for gi, size in enumerate(SIZES):
        gx = left + gi * group_w + bar_w / 2
        for si, (_, _, _, colour) in enumerate(series):
            r = ratios[gi][si]
            if r is None:
                continue
            x = gx + si * bar_w
            out.append(f'<rect x="{x:.1f}" y="{y(r):.1f}" width="{bar_w * 0.9:.1f}" height="{y(0) - y(r):.1f}" fill="{colour}"/>')
            out.append(f'<text x="{x + bar_w * 0.45:.1f}" y="{y(r) - 4:.1f}" text-anchor="middle" font-size="11">{r:.2f}</text>')
        out.append(f'<text x="{gx + bar_w:.1f}" y="{y(0) + 18:.1f}" text-anchor="middle">{size}</text>')
    for si, (name, _, _, colour) in enumerate(series):
        lx = left + si * 170
        out.append(f'<rect x="{lx}" y="{h - 22}" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{lx + 18}" y="{h - 12}">{name}</text>')
    out.append(f'<text x="{w - 20}" y="{h - 12}" text-anchor="end">dashed: 1.0 (no cost)</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--criterion", type=Path, default=default_criterion_dir(), help="criterion output directory")
    ap.add_argument("-o", "--out", type=Path, help="write the Markdown here instead of stdout")
    ap.add_argument("--openssl", type=Path, help="TSV written by benches/compare/openssl-speed.sh")
    ap.add_argument("--only-openssl", action="store_true", help="print only the openssl comparison table")
    ap.add_argument("--svg", type=Path, help="also write the STARTTLS-over-plaintext chart (SVG) here")
    ap.add_argument(
        "--stat",
        choices=["mean", "median", "min"],
        default="mean",
        help="criterion's mean or median point estimate (default mean), or min: the fastest sample",
    )
    args = ap.parse_args()

    if not args.criterion.is_dir():
        sys.exit(f"{args.criterion}: no criterion output; run `cargo bench -p smtplab-benches` first")
    est = load(args.criterion, args.stat)
    if not est:
        sys.exit(f"{args.criterion}: no estimates found")

    if args.only_openssl:
        if not args.openssl:
            sys.exit("--only-openssl needs --openssl FILE")
        lines = openssl_table(est, load_openssl(args.openssl))
    else:
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        lines = [
            "# STARTTLS overhead (generated)",
            "",
            f"Generated {now} by `benches/bench-report.py` from `{args.criterion}`. "
            f"Statistic: {STAT_NAME[args.stat]}; see BENCHMARKS.md for what each id measures.",
            "",
        ]
        for section in (new_connection_table, reused_table, handshake_table, provider_table, record_table, parser_table):
            lines += section(est) + [""]
        if args.openssl:
            lines += openssl_table(est, load_openssl(args.openssl)) + [""]
    if args.svg:
        args.svg.write_text(overhead_svg(est))
    text = "\n".join(lines).rstrip() + "\n"
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
