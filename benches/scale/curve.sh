#!/bin/bash
# The scaling curve of one machine (BENCHMARKS.md, "Scaling curve"; issue 15): runs
# benches/scale/scale.toml at other sizes, one point after another, each through run-scale.sh
# (/usr/bin/time -v; the process's VmRSS and the load average once a second), and
# appends one CSV row per point. Each point's scenario is scale.toml with only
# `[traffic] messages` and `[population] systems` changed; SYSTEMS counts all systems as
# BENCHMARKS.md does (scale.toml's 10 providers + its small systems = 200), so SYSTEMS = 50 sets
# `systems = 40`. Each run directory is measured (du), then deleted: a 1M-message run writes tens
# of GB.
#
# usage: benches/scale/curve.sh [-b SMTPLAB_BINARY] [-r COMMIT] [-o OUT_DIR] [-c CSV] [-l LOG_DIR] MESSAGES:SYSTEMS...
#   e.g.  benches/scale/curve.sh 1000000:200 100000:200 100000:50 100000:1000 10000:200
#   -b  the release binary (default $CARGO_TARGET_DIR/release/smtplab, else target/release/smtplab)
#   -r  the commit the binary was built from, for the CSV (default: this checkout's HEAD)
#   -o  scratch directory for scenarios and run directories (default /var/tmp/smtplab-curve)
#   -c  CSV appended to (default benches/scale/curve.csv; the header is written if it is new)
#   -l  where each point's narration + time -v output (.time) and samples (.rss: "seconds rss_kib
#       load1") are kept (default benches/scale/curve-logs)
# A point whose run fails or is interrupted (Ctrl-C: SIGINT reaches smtplab, which stops and
# keeps what it has) still gets its row, with its exit status and the messages it submitted.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
base="$here/scale.toml"
bin=${CARGO_TARGET_DIR:-target}/release/smtplab
out=/var/tmp/smtplab-curve
csv="$here/curve.csv"
logs="$here/curve-logs"
usage() { sed -n '/^# usage:/,/^# A point/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
commit=
while getopts "b:r:o:c:l:h" opt; do
  case $opt in
    b) bin=$OPTARG ;;
    r) commit=$OPTARG ;;
    o) out=$OPTARG ;;
    c) csv=$OPTARG ;;
    l) logs=$OPTARG ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || usage
[ -x "$bin" ] || { echo "error: no smtplab binary at $bin; build it (cargo build --release -p smtplab) or pass -b" >&2; exit 2; }

# The providers of scale.toml, and the line numbers of the two keys changed, checked up front so
# a bad base file fails before any run.
key_line() { # SECTION KEY -> "LINE VALUE" of `KEY = VALUE` under [SECTION], or nothing
  awk -v sec="[$1]" -v key="$2" '/^\[/ { cur = $1 } cur == sec && $1 == key && $2 == "=" { print NR, $3; exit }' "$base"
}
for k in "traffic messages" "population systems" "population providers"; do
  if [ -z "$(key_line $k)" ]; then
    echo "error: $base: no \`${k#* } = N\` line under [${k% *}]; curve.sh changes that line (write it as \`${k#* } = N\`)" >&2
    exit 2
  fi
done
read -r prov_line providers <<< "$(key_line population providers)"
[[ $providers =~ ^[0-9]+$ ]] || { echo "error: $base:$prov_line: providers = $providers is not a whole number" >&2; exit 2; }
for p in "$@"; do
  if ! [[ $p =~ ^([0-9]+):([0-9]+)$ ]] || [ "${BASH_REMATCH[1]}" -eq 0 ] || [ "${BASH_REMATCH[2]}" -le "$providers" ]; then
    echo "error: point '$p': write MESSAGES:SYSTEMS with MESSAGES > 0 and SYSTEMS > $providers (the providers of $base), e.g. 100000:200" >&2
    exit 2
  fi
done

mkdir -p "$out" "$logs" "$(dirname "$csv")"
header="started_utc,commit,messages,systems,exit_status,submitted,wall_s,peak_rss_kib,user_s,sys_s,cpu_percent,up_s,submit_s,drain_s,stop_merge_s,dissect_s,analysis_s,hash_s,report_s,packets,dropped,run_dir_mib,load1_before,load1_mean,load1_max,load1_after"
[ -s "$csv" ] || echo "$header" > "$csv"
[ -n "$commit" ] || commit=$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)

# Seconds since the run began at the first narration line containing TEXT ("[   12.3s] TEXT").
phase_at() { awk -v t="$2" 'index($0, t) && /^\[ *[0-9.]+s\]/ { s = $0; sub(/^\[ */, "", s); sub(/s\].*/, "", s); print s; exit }' "$1"; }
minus() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a - b }' || true; }

for p in "$@"; do
  messages=${p%:*} systems=${p#*:}
  label="m${messages}-s${systems}"
  small=$((systems - providers))
  point="$out/$label"
  rm -rf "$point"
  mkdir -p "$point/runs"
  read -r m_line _ <<< "$(key_line traffic messages)"
  read -r s_line _ <<< "$(key_line population systems)"
  awk -v ml="$m_line" -v sl="$s_line" -v m="$messages" -v s="$small" \
    'NR == ml { print "messages = " m; next } NR == sl { print "systems = " s; next } { print }' "$base" > "$point/scale.toml"

  # The 1M run writes tens of GB: refuse to start without room (the 100,000-message run
  # directory is about 3 GB; 36 KiB a message + 2 GiB is asked for).
  need_kib=$((messages * 36 + 2 * 1024 * 1024))
  free_kib=$(df -Pk "$point" | awk 'NR == 2 { print $4 }')
  if [ "$free_kib" -lt "$need_kib" ]; then
    echo "error: point $p needs about $((need_kib / 1048576)) GiB free in $out, $((free_kib / 1048576)) GiB are; free space or pass -o elsewhere" >&2
    exit 1
  fi

  started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  load_before=$(cut -d' ' -f1 /proc/loadavg)
  echo "$started point $p (population.systems = $small): running" >&2
  # A handler, not an ignore: an ignored SIGINT would be inherited by smtplab, which must get it.
  trap ':' INT
  status=0
  "$here/run-scale.sh" "$bin" "$point" "$point/scale.toml" >&2 || status=$?
  trap - INT
  load_after=$(cut -d' ' -f1 /proc/loadavg)

  t="$point/scale.time"
  field() { awk -F': ' -v k="$1" 'index($0, k) == 2 { print $2; exit }' "$t"; }
  wall=$(field "Elapsed (wall clock) time" | awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.2f", s }')
  rss_peak=$(field "Maximum resident set size")
  user=$(field "User time (seconds)")
  sys=$(field "System time (seconds)")
  cpu=$(field "Percent of CPU this job got" | tr -d '%')
  exit_status=$(field "Exit status")
  [ -n "$exit_status" ] || exit_status=$status
  up=$(phase_at "$t" "relays up")
  # "all messages submitted", or "interrupted after N messages submitted" for a cut-short run.
  submitted_at=$(phase_at "$t" "messages submitted")
  # "queues drained; stopping relays", or "N messages still queued; stopping relays".
  drained=$(phase_at "$t" "stopping relays")
  dissecting=$(phase_at "$t" "dissecting the capture")
  analysing=$(phase_at "$t" "analysing")
  hashing=$(phase_at "$t" "hashing the run's files")
  reporting=$(phase_at "$t" "writing the report")
  read -r packets dropped <<< "$(awk '/^captured [0-9]+ packets/ { gsub(/[()]/, ""); print $2, $4; exit }' "$t")"
  load_stats=$(awk '{ s += $3; if ($3 > m) m = $3; n++ } END { if (n) printf "%.2f %.2f", s / n, m }' "$point/scale.rss")
  read -r load_mean load_max <<< "${load_stats:-" "}"
  run_dir=$(find "$point/runs" -mindepth 1 -maxdepth 1 -type d | head -1)
  submitted=
  run_mib=
  if [ -n "$run_dir" ]; then
    [ -f "$run_dir/truth/messages.jsonl" ] && submitted=$(wc -l < "$run_dir/truth/messages.jsonl")
    run_mib=$(du -sm "$run_dir" | cut -f1)
  fi
  echo "$started,$commit,$messages,$systems,$exit_status,$submitted,$wall,$rss_peak,$user,$sys,$cpu,$up,$(minus "$submitted_at" "$up"),$(minus "$drained" "$submitted_at"),$(minus "$dissecting" "$drained"),$(minus "$analysing" "$dissecting"),$(minus "$hashing" "$analysing"),$(minus "$reporting" "$hashing"),$(minus "$wall" "$reporting"),$packets,$dropped,$run_mib,$load_before,$load_mean,$load_max,$load_after" >> "$csv"
  cp "$point/scale.time" "$logs/$label.time"
  cp "$point/scale.rss" "$logs/$label.rss"
  # The run directory is gone after this; its scenario and narration are kept in the log.
  rm -rf "$point/runs"
  echo "$(date -u +%H:%M:%SZ) point $p: exit $exit_status, wall ${wall}s, peak RSS ${rss_peak} KiB, user ${user}s, sys ${sys}s" >&2
done
