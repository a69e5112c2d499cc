#!/usr/bin/env bash
# The tap's speed and memory (issue 4), side by side in one run with libpcap alone and tshark, on
# a capture of mixed plaintext and STARTTLS SMTP made by the project's generator:
#
#   benches/compare/tap-vs-libpcap-tshark.sh [CAPTURE.pcap]
#
# Without CAPTURE, one of SIZE_MB MiB (default 1024) is generated first into $WORK with
#   cargo run --release -p smtplab-tap --example gen_capture -- CAPTURE SIZE_MB
# (its JSON line, with the counts the tap should find, is kept next to it as CAPTURE.json).
#
# Measured, each on the same file, after one `cat FILE >/dev/null` so every reader starts from
# the page cache:
#   (a) libpcap alone: a C program (gcc -O2, -lpcap) counting packets and bytes with
#       pcap_next_ex: the floor any libpcap-based reader pays.
#   (b) tshark -r FILE -d tcp.port==$PORT,smtp -Y smtp -T fields -e smtp.req.command on the
#       whole file, once (about 35 s and 2 GiB of memory for 1 GB; TSHARK_WHOLE=0 skips it),
#       and on a prefix of TSHARK_MB MiB (default 150; cut at a packet boundary with tcpdump
#       -c), whose rate is also extrapolated to the whole file (the tap is run on the prefix too,
#       for a like-for-like check).
#   (c) smtplab tap FILE --format jsonl > $WORK/tap.jsonl (release build); its lines are the
#       records (compare with the generator's expected_tap_records).
# (a) and (c) run REPEAT times (default 3), alternating; the median wall time is reported, with
# CPU time (user + system), which the other jobs of a shared machine disturb less. Peak memory
# is /usr/bin/time -v's maximum resident set size.
#
# Environment: SMTPLAB (the release binary; default $CARGO_TARGET_DIR/release/smtplab, else
# target/release/smtplab), WORK (default /var/tmp/smtplab-bench), SIZE_MB, TSHARK_MB, TSHARK_WHOLE, PORT
# (default 2525, the generator's), REPEAT. Prints the machine, every command, and a Markdown
# table on stdout.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="${WORK:-/var/tmp/smtplab-bench}"
size_mb="${SIZE_MB:-1024}"
tshark_mb="${TSHARK_MB:-150}"
port="${PORT:-2525}"
repeat="${REPEAT:-3}"
target="${CARGO_TARGET_DIR:-$root/target}"
smtplab="${SMTPLAB:-$target/release/smtplab}"
mkdir -p "$work"

# shellcheck source=../../scripts/lib.sh
. "$root/scripts/lib.sh"
ensure_packages gcc libpcap-dev tshark tcpdump time
for tool in gcc tshark tcpdump /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 1; }
done
[[ -x "$smtplab" ]] || { echo "no release binary at $smtplab: cargo build --release -p smtplab" >&2; exit 1; }

capture="${1:-}"
if [[ -z "$capture" ]]; then
    capture="$work/capture-${size_mb}m.pcap"
    if [[ ! -s "$capture" ]]; then
        echo "generating $capture ($size_mb MiB)" >&2
        (cd "$root" && cargo run --release -q -p smtplab-tap --example gen_capture -- "$capture" "$size_mb") \
            >"$capture.json"
    fi
fi
file_bytes=$(stat -c %s "$capture")

# (a)'s program.
cat >"$work/pcap_count.c" <<'EOF'
#include <pcap/pcap.h>
#include <stdio.h>
int main(int argc, char **argv) {
    char err[PCAP_ERRBUF_SIZE];
    if (argc != 2) { fprintf(stderr, "usage: pcap_count FILE\n"); return 2; }
    pcap_t *p = pcap_open_offline(argv[1], err);
    if (!p) { fprintf(stderr, "%s\n", err); return 1; }
    struct pcap_pkthdr *h;
    const u_char *d;
    unsigned long long packets = 0, bytes = 0;
    int r;
    while ((r = pcap_next_ex(p, &h, &d)) == 1) { packets++; bytes += h->caplen; }
    if (r == PCAP_ERROR) { fprintf(stderr, "%s\n", pcap_geterr(p)); return 1; }
    printf("%llu %llu\n", packets, bytes);
    pcap_close(p);
    return 0;
}
EOF
gcc -O2 -o "$work/pcap_count" "$work/pcap_count.c" -lpcap

echo "# machine: $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(free -g | awk '/Mem:/ {print $2}') GiB RAM; $(uname -sr)"
echo "# date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $(tshark --version | head -1); libpcap $(pcap-config --modversion 2>/dev/null || dpkg-query -W -f='${Version}' libpcap0.8 2>/dev/null); $("$smtplab" --version)"
echo "# capture: $capture, $file_bytes bytes"
[[ -s "$capture.json" ]] && echo "# generator: $(cat "$capture.json")"

cat "$capture" >/dev/null

# Runs a command under /usr/bin/time -v; prints "wall_seconds cpu_seconds max_rss_kib".
timed() {
    local log="$work/time.log"
    /usr/bin/time -v -o "$log" "$@"
    awk -F': ' '
        /Elapsed \(wall clock\)/ { n = split($2, p, ":"); w = 0; for (i = 1; i <= n; i++) w = w * 60 + p[i] }
        /User time/ { u = $2 } /System time/ { s = $2 } /Maximum resident/ { m = $2 }
        END { printf "%.3f %.3f %d\n", w, u + s, m }' "$log"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

declare -a pcap_wall pcap_cpu pcap_rss tap_wall tap_cpu tap_rss
tap_out="$work/tap.jsonl"
echo "# (a) $work/pcap_count $capture" >&2
echo "# (c) $smtplab tap $capture --format jsonl > $tap_out" >&2
for ((i = 0; i < repeat; i++)); do
    read -r w c m < <(timed sh -c "\"$work/pcap_count\" \"$capture\" >\"$work/pcap_count.out\"")
    pcap_wall+=("$w"); pcap_cpu+=("$c"); pcap_rss+=("$m")
    read -r w c m < <(timed sh -c "\"$smtplab\" tap \"$capture\" --format jsonl >\"$tap_out\"")
    tap_wall+=("$w"); tap_cpu+=("$c"); tap_rss+=("$m")
    echo "run $((i + 1)): libpcap ${pcap_wall[i]} s (cpu ${pcap_cpu[i]} s), tap ${tap_wall[i]} s (cpu ${tap_cpu[i]} s, ${tap_rss[i]} KiB)" >&2
done
read -r packets pcap_bytes <"$work/pcap_count.out"
records=$(wc -l <"$tap_out")
sessions=$(grep -c '"record":"session"' "$tap_out" || true)

# (b) tshark on a prefix cut at a packet boundary.
prefix="$work/prefix-${tshark_mb}m.pcap"
prefix_packets=$(awk -v p="$packets" -v f="$file_bytes" -v m="$tshark_mb" 'BEGIN { printf "%d", p * m * 1048576 / f }')
tcpdump -r "$capture" -w "$prefix" -c "$prefix_packets" 2>/dev/null
prefix_bytes=$(stat -c %s "$prefix")
cat "$prefix" >/dev/null
tshark_out="$work/tshark.txt"
echo "# (b) tshark -r $prefix -d tcp.port==$port,smtp -Y smtp -T fields -e smtp.req.command > $tshark_out" >&2
read -r ts_wall ts_cpu ts_rss < <(timed sh -c "tshark -r \"$prefix\" -d tcp.port==$port,smtp -Y smtp -T fields -e smtp.req.command >\"$tshark_out\" 2>/dev/null")
ts_lines=$(wc -l <"$tshark_out")
ts_commands=$(grep -c . "$tshark_out" || true)
# The tap on the same prefix, for a like-for-like check of the extrapolation.
read -r tp_wall tp_cpu tp_rss < <(timed sh -c "\"$smtplab\" tap \"$prefix\" --format jsonl >\"$work/tap-prefix.jsonl\"")
# tshark on the whole file: the direct comparison.
tw_wall=0; tw_cpu=0; tw_rss=0
if [[ "${TSHARK_WHOLE:-1}" == 1 ]]; then
    echo "# (b) tshark -r $capture -d tcp.port==$port,smtp -Y smtp -T fields -e smtp.req.command > $work/tshark-whole.txt" >&2
    read -r tw_wall tw_cpu tw_rss < <(timed sh -c "tshark -r \"$capture\" -d tcp.port==$port,smtp -Y smtp -T fields -e smtp.req.command >\"$work/tshark-whole.txt\" 2>/dev/null")
fi

pw=$(printf '%s\n' "${pcap_wall[@]}" | median); pc=$(printf '%s\n' "${pcap_cpu[@]}" | median)
tw=$(printf '%s\n' "${tap_wall[@]}" | median); tc=$(printf '%s\n' "${tap_cpu[@]}" | median)
pm=$(printf '%s\n' "${pcap_rss[@]}" | sort -n | tail -1); tm=$(printf '%s\n' "${tap_rss[@]}" | sort -n | tail -1)

awk -v fb="$file_bytes" -v pk="$packets" -v rec="$records" -v ses="$sessions" \
    -v pw="$pw" -v pc="$pc" -v pm="$pm" -v tw="$tw" -v tc="$tc" -v tm="$tm" \
    -v pb="$prefix_bytes" -v ppk="$prefix_packets" -v sw="$ts_wall" -v sc="$ts_cpu" -v sm="$ts_rss" \
    -v sl="$ts_lines" -v scmd="$ts_commands" -v tpw="$tp_wall" -v tpc="$tp_cpu" -v tpm="$tp_rss" \
    -v ww="$tw_wall" -v wc="$tw_cpu" -v wm="$tw_rss" '
function mbs(b, s) { return s > 0 ? sprintf("%.0f", b / s / 1e6) : "-" }
function per(n, s) { return s > 0 ? sprintf("%.0f", n / s) : "-" }
BEGIN {
    printf "\n| reader | input | wall s (median) | CPU s | MB/s (wall) | packets/s | records/s | peak RSS MiB |\n"
    printf "|---|---|---:|---:|---:|---:|---:|---:|\n"
    printf "| (a) libpcap pcap_next_ex | whole file, %.0f MB | %.2f | %.2f | %s | %s | - | %.1f |\n", fb / 1e6, pw, pc, mbs(fb, pw), per(pk, pw), pm / 1024
    printf "| (b) tshark -Y smtp | prefix, %.0f MB | %.2f | %.2f | %s | %s | %s (%d lines, %d commands) | %.1f |\n", pb / 1e6, sw, sc, mbs(pb, sw), per(ppk, sw), per(sl, sw), sl, scmd, sm / 1024
    printf "| (b) tshark, extrapolated | whole file | %.0f | - | %s | %s | - | - |\n", sw * fb / pb, mbs(pb, sw), per(ppk, sw)
    if (ww > 0) printf "| (b) tshark -Y smtp, run | whole file | %.2f | %.2f | %s | %s | - | %.1f |\n", ww, wc, mbs(fb, ww), per(pk, ww), wm / 1024
    printf "| (c) smtplab tap --format jsonl | whole file | %.2f | %.2f | %s | %s | %s (%d records, %d sessions) | %.1f |\n", tw, tc, mbs(fb, tw), per(pk, tw), per(rec, tw), rec, ses, tm / 1024
    printf "| (c) smtplab tap, on the tshark prefix | prefix | %.2f | %.2f | %s | %s | - | %.1f |\n", tpw, tpc, mbs(pb, tpw), per(ppk, tpw), tpm / 1024
    printf "\nRatios: tap / libpcap rate = %.2f by wall time (target >= 0.5), %.2f by CPU time; ", pw / tw, pc / tc
    if (ww > 0) printf "tap / tshark rate = %.0fx on the whole file (target >= 50x); ", ww / tw
    printf "%.0fx against the rate of tshark on the prefix, %.0fx on the same prefix; ", (fb / tw) / (pb / sw), sw / tpw
    printf "tap peak RSS = %.1f MiB (target < 256 MiB).\n", tm / 1024
}'
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
