#!/usr/bin/env bash
# Runs `openssl speed` for the three TLS 1.3 AEADs and prints it next to our record-protection
# numbers (criterion estimates of benches/benches/record_protection.rs), with the ratio.
#
# Run by hand, after `cargo bench -p smtplab-benches --bench record_protection`, on the same
# machine and in the same session (the machine is shared and noisy: compare numbers taken
# together):
#
#   benches/compare/openssl-speed.sh [seconds-per-measurement]     # default 3
#
# Environment: CRITERION_DIR (default $CARGO_TARGET_DIR/criterion, else target/criterion),
# OPENSSL (default openssl). Writes the raw OpenSSL numbers as TSV to $OUT
# (default: a temp file; printed at the end) and the Markdown table to stdout.
#
# Measurements, each at 1024 and 16384 bytes:
#   evp       openssl speed -evp <cipher> -bytes N          (the issue's command)
#   aead      openssl speed -aead -evp <cipher> -bytes N    (per buffer: IV, AAD, tag)
#   aead-dec  openssl speed -aead -decrypt -evp <cipher> -bytes N
# Always with -elapsed: criterion measures wall-clock time, so OpenSSL must too (its default is
# user CPU time, which hides the time a contended machine takes the CPU away). CPU=1 drops
# -elapsed, to see OpenSSL's uncontended rate; pair it with STAT=min (our fastest criterion
# sample, see bench-report.py --stat) for a like-for-like uncontended comparison. STAT=mean
# (default) or median picks criterion's point estimate.
set -euo pipefail

secs="${1:-3}"
here="$(cd "$(dirname "$0")" && pwd)"
openssl="${OPENSSL:-openssl}"
if [[ -n "${CRITERION_DIR:-}" ]]; then
    crit="$CRITERION_DIR"
elif [[ -n "${CARGO_TARGET_DIR:-}" ]]; then
    crit="$CARGO_TARGET_DIR/criterion"
else
    crit="$here/../../target/criterion"
fi
out="${OUT:-$(mktemp --tmpdir openssl-speed.XXXXXX.tsv)}"
clock=(-elapsed)
clock_name="wall clock (-elapsed)"
if [[ "${CPU:-0}" == 1 ]]; then
    clock=()
    clock_name="user CPU time"
fi

echo "# $("$openssl" version) | $clock_name | $(date -u '+%Y-%m-%d %H:%M UTC') | $(nproc) cpus | load $(cut -d' ' -f1-3 /proc/loadavg)" >"$out"
for cipher in aes-128-gcm aes-256-gcm chacha20-poly1305; do
    for bytes in 1024 16384; do
        for mode in evp aead aead-dec; do
            case "$mode" in
                evp) flags=() ;;
                aead) flags=(-aead) ;;
                aead-dec) flags=(-aead -decrypt) ;;
            esac
            # -mr: "+F:<n>:<name>:<bytes per second>" for the one buffer size.
            bps="$("$openssl" speed "${clock[@]}" -seconds "$secs" -bytes "$bytes" -mr "${flags[@]}" -evp "$cipher" 2>/dev/null \
                | awk -F: '/^\+F:/ { print $4 }')"
            if [[ -z "$bps" ]]; then
                echo "openssl speed gave no result for $cipher $mode $bytes" >&2
                exit 1
            fi
            printf '%s\t%s\t%s\t%s\n' "$cipher" "$mode" "$bytes" "$bps" >>"$out"
            printf '%-18s %-9s %6s B  %8.1f MB/s\n' "$cipher" "$mode" "$bytes" "$(awk -v b="$bps" 'BEGIN { print b / 1e6 }')" >&2
        done
    done
done

python3 "$here/../bench-report.py" --criterion "$crit" --openssl "$out" --only-openssl --stat "${STAT:-mean}"
echo
echo "OpenSSL raw numbers: $out"
