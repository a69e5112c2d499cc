#!/bin/bash
# The scale benchmark (BENCHMARKS.md, "Scale"): runs benches/scale/scale.toml (or SCENARIO) with
# the release binary under /usr/bin/time -v, and samples the process's resident memory (VmRSS)
# and the load average once a second, so the peak can be placed in a phase of the run (the run
# prints the seconds since it started at each phase; the samples use the same clock, within a
# second). curve.sh runs each point of the scaling curve through it.
#
# usage: benches/scale/run-scale.sh [SMTPLAB_BINARY] [OUT_DIR] [SCENARIO]
#   writes OUT_DIR/scale.{log,time,rss,load}: stdout, stderr + time -v, "seconds rss_kib load1"
#   per line, and `uptime` before and after; OUT_DIR/smtplab.pid (for `perf record -p`). The run
#   directory goes to OUT_DIR/runs (about 3 GB for scale.toml: capture, mailboxes, spools; delete
#   it afterwards). Ctrl-C reaches smtplab, which stops and keeps what it has; the script still
#   writes its samples, and exits with smtplab's exit status.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-${CARGO_TARGET_DIR:-target}/release/smtplab}
out=${2:-/var/tmp/smtplab-scale}
scenario=${3:-$here/scale.toml}
mkdir -p "$out/runs"
uptime > "$out/scale.load"
/usr/bin/time -v "$bin" run "$scenario" --out "$out/runs" > "$out/scale.log" 2> "$out/scale.time" &
timer=$!
# The smtplab process is time's child; wait for it to appear (bounded).
pid=
for _ in $(seq 50); do
  pid=$(pgrep -P "$timer" || true)
  [ -n "$pid" ] && break
  sleep 0.1
done
echo "$pid" > "$out/smtplab.pid"
trap '[ -n "$pid" ] && kill -INT "$pid" 2>/dev/null || true' INT
start=$(date +%s.%N)
: > "$out/scale.rss"
while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; do
  rss=$(awk '/^VmRSS/{print $2}' "/proc/$pid/status" 2>/dev/null || true)
  echo "$(awk -v a="$(date +%s.%N)" -v b="$start" 'BEGIN { printf "%.1f", a - b }') ${rss:-0} $(cut -d' ' -f1 /proc/loadavg)" >> "$out/scale.rss"
  sleep 1
done
status=0
wait "$timer" || status=$?
trap - INT
uptime >> "$out/scale.load"
grep -E "Elapsed|Maximum resident|Exit status" "$out/scale.time" || true
echo "peak sample: $(sort -k2 -n "$out/scale.rss" | tail -1)"
exit "$status"
