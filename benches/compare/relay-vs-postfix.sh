#!/usr/bin/env bash
# Relay throughput and CPU per message, smtplab against Postfix, in one run on the same machine.
#
# Topology, identical for every row: smtp-source (Postfix's load generator, plaintext) submits N
# messages of SIZE bytes over SESS parallel sessions to relay A, which queues each durably and
# relays it over one hop to relay B with STARTTLS required (`smtp_tls_security_level = encrypt`
# on Postfix, `--outbound-tls encrypt` on smtplab; TLS 1.3, both MTAs' default ciphers).
# Throughput is N / (first submission until B has taken the last message).
#
# Postfix runs as a site runs it: Debian's master.cf (tlsmgr on, default process limits), the
# TLS session caches on in both directions (btree databases in data_directory, as Debian's own
# main.cf has them). Rows:
#   postfix          A opens a new TLS connection per delivery (Postfix's default)
#   postfix-reuse    A with `smtp_tls_connection_reuse = yes` and the tlsproxy service enabled
#   smtplab          smtplab in A's place, a new connection (and TLS session) per message
#   smtplab-reuse    smtplab A with Postfix-like on-demand connection reuse
#                    (REUSE_FLAGS, default "--connection-reuse on-demand --destination-concurrency 5";
#                    these flags exist in relay_bench only: SMTPLAB=.../examples/relay_bench)
#   smtplab-before   the smtplab row with another build, SMTPLAB_BEFORE (e.g. main's relay_bench),
#                    A and its own B, for before/after rows in one run beside Postfix
# PLAIN=1 adds a plaintext A -> B row per MTA. A Postfix B logs its TLS sessions
# (smtpd_tls_loglevel = 1): the script prints how many each row made and how many were full
# handshakes rather than resumptions.
#
# B (SINK):
#   own (default)    each MTA relays to a B of its own kind that delivers to disk (Postfix:
#                    virtual(8) into Maildir, fsync per message; smtplab: its mailbox files)
#   discard          every row relays to one shared Postfix B whose only transport is discard(8),
#                    so only A differs between rows
#
# CPU per message: every MTA instance runs in a cgroup (v2) of its own; cpu.stat usage_usec
# before and after the load, divided by N, counts every process of the instance (Postfix's
# master, smtpd, cleanup, qmgr, smtp, tlsmgr, tlsproxy, ..., short-lived ones included; smtplab's
# one process, all threads). smtp-source is not counted.
#
# Only loopback traffic: `smtpd_peername_lookup = no` on every Postfix instance, because the
# 127.0.98.x sources have no /etc/hosts entry and each reverse lookup would otherwise go to the
# system's DNS server (that is what made the previous figures wrong: see BENCHMARKS.md).
#
# Usage (root; Debian's postfix; a release build of smtplab; cgroup v2 mounted):
#   cargo build --release --bin smtplab
#   N=2000 SIZE=10240 SESS=20 benches/compare/relay-vs-postfix.sh
#   SINK=discard ROWS="postfix postfix-reuse smtplab" ... benches/compare/relay-vs-postfix.sh
#   PROFILE=/tmp/relay.perf ROWS=smtplab ...   (perf record of smtplab's relay A under the load)
set -euo pipefail
N=${N:-2000}
SIZE=${SIZE:-10240}
SESS=${SESS:-20}
SINK=${SINK:-own}
ROWS=${ROWS:-postfix postfix-reuse smtplab}
LIMIT=${LIMIT:-600} # seconds any one row may take, load and delivery together
SMTPLAB=${SMTPLAB:-${CARGO_TARGET_DIR:-target}/release/smtplab}
[ -x "$SMTPLAB" ] || { echo "build first: cargo build --release --bin smtplab ($SMTPLAB missing)" >&2; exit 1; }
case " $ROWS " in *" smtplab-before "*)
  [ -x "${SMTPLAB_BEFORE:-}" ] || { echo "row smtplab-before needs SMTPLAB_BEFORE, an executable" >&2; exit 1; } ;;
esac
RELAY_BIN=$SMTPLAB # the smtplab build the current row runs
command -v smtp-source >/dev/null || { echo "smtp-source missing: apt-get install postfix" >&2; exit 1; }
# Postfix logs through postlogd's datagram socket, whose queue is net.unix.max_dgram_qlen long:
# 10 in a kernel at its default (no systemd here to make it 512). Every daemon then waits on its
# log lines (about eight a message) and postlogd can deadlock on itself: raise it as systemd does.
qlen=$(cat /proc/sys/net/unix/max_dgram_qlen)
[ "$qlen" -ge 512 ] || { sysctl -qw net.unix.max_dgram_qlen=512; echo "net.unix.max_dgram_qlen: $qlen -> 512 (Postfix's log socket)"; }
CGROOT=$(findmnt -n -t cgroup2 -o TARGET | head -1)
[ -n "$CGROOT" ] && [ -w "$CGROOT" ] || { echo "needs a writable cgroup v2 mount (CPU accounting); none found" >&2; exit 1; }
case $SINK in own | discard) ;; *) echo "SINK must be own or discard, not '$SINK'" >&2; exit 1 ;; esac

WORK=$(mktemp -d /tmp/relaybench.XXXXXX)
chmod 755 "$WORK" # Postfix daemons run as the postfix user and must reach their directories
PIDS=()
stop_postfix() { script -qec "postfix -c $1/etc stop" /dev/null >/dev/null 2>&1 || true; }
cleanup() {
  for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for d in "$WORK"/pf-*; do [ -d "$d/etc" ] && stop_postfix "$d"; done
  for c in "$CGROOT"/smtplab-bench-$$-*; do
    [ -d "$c" ] || continue
    wait_until 20 cg_empty "$c" || true
    rmdir "$c" 2>/dev/null || true
  done
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

# A throwaway certificate for every B.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=mx.sink.example" \
  -addext "subjectAltName=DNS:mx.sink.example" -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

cg_new() { # name -> prints the cgroup directory
  local c="$CGROOT/smtplab-bench-$$-$1"
  mkdir "$c"
  echo "$c"
}
cg_empty() { [ -z "$(cat "$1/cgroup.procs" 2>/dev/null)" ]; }
cg_usec() { awk '$1 == "usage_usec" { print $2 }' "$1/cpu.stat"; }

wait_until() { # seconds-limit command... : polls until the command succeeds
  local limit=$1 t0
  shift
  t0=$SECONDS
  until "$@"; do
    sleep 0.05
    if ((SECONDS - t0 > limit)); then echo "timeout after ${limit}s: $*" >&2; return 1; fi
  done
}
port_open() { (echo >"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; }
# Delivered smtplab mail only: a mailbox file is written as .tmp and renamed to .eml when synced.
files_at_least() { [ "$(find "$1" -type f -name '*.eml' 2>/dev/null | wc -l)" -ge "$2" ]; }
sent_at_least() { [ "$(grep -c 'status=sent' "$1" 2>/dev/null || true)" -ge "$2" ]; }

postfix_instance() { # name listen reuse(yes|no) extra-main.cf-lines...
  local name=$1 listen=$2 reuse=$3
  shift 3
  local d="$WORK/pf-$name"
  mkdir -p "$d/etc" "$d/queue" "$d/data" "$d/mail"
  chown postfix "$d/data"
  chown 65534:65534 "$d/mail"
  # Debian's master.cf as shipped, except: no chroot (nothing fills the jail), the smtpd
  # listener on our address, and with reuse the tlsproxy service Postfix's docs prescribe.
  awk -v L="$listen" -v R="$reuse" '
    R == "yes" && /^#tlsproxy / { sub(/^#/, "") }
    /^#/ || /^ / || NF < 8 { print; next }
    $1 == "smtp" && $2 == "inet" { print L " inet n - n - - smtpd"; next }
    { $5 = "n"; print }' /etc/postfix/master.cf >"$d/etc/master.cf"
  {
    echo "compatibility_level = 3.6"
    echo "queue_directory = $d/queue"
    echo "data_directory = $d/data"
    echo "mail_owner = postfix"
    echo "setgid_group = postdrop"
    echo "myhostname = mx.$name.example"
    echo "inet_interfaces = 127.0.0.1"
    echo "inet_protocols = ipv4"
    echo "mydestination ="
    echo "mynetworks = 127.0.0.0/8"
    echo "smtpd_relay_restrictions = permit_mynetworks, reject"
    echo "maillog_file = $d/maillog"
    echo "maillog_file_prefixes = $d"
    echo "smtp_dns_support_level = disabled"
    echo "smtpd_peername_lookup = no"
    echo "alias_maps ="
    echo "alias_database ="
    echo "smtp_tls_session_cache_database = btree:\${data_directory}/smtp_scache"
    echo "smtpd_tls_session_cache_database = btree:\${data_directory}/smtpd_scache"
    echo "smtp_tls_connection_reuse = $reuse"
    for l in "$@"; do echo "$l"; done
  } >"$d/etc/main.cf"
  local cg
  cg=$(cg_new "pf-$name")
  # The master and every daemon it forks inherit the cgroup of the shell that starts it.
  (echo "$BASHPID" >"$cg/cgroup.procs" && script -qec "postfix -c $d/etc start" /dev/null >/dev/null)
  wait_until 30 port_open "$listen"
}

smtplab_relay() { # name listen extra-args...
  local name=$1 listen=$2
  shift 2
  local cg
  cg=$(cg_new "sl-$name")
  (echo "$BASHPID" >"$cg/cgroup.procs" && exec "$RELAY_BIN" relay --listen "$listen" --hostname "mx.$name.example" \
    --spool "$WORK/sl-$name/spool" --mailbox-dir "$WORK/sl-$name/mail" "$@" >"$WORK/sl-$name.log" 2>&1) &
  PIDS+=($!)
  wait_until 30 port_open "$listen"
}

postfix_sink() { # name listen
  local name=$1 listen=$2
  local common=("smtpd_tls_cert_file = $WORK/cert.pem" "smtpd_tls_key_file = $WORK/key.pem"
    "smtpd_tls_security_level = may" "smtpd_tls_loglevel = 1" "virtual_mailbox_domains = sink.example"
    "virtual_mailbox_base = $WORK/pf-$name/mail" "virtual_mailbox_maps = static:inbox/"
    "virtual_uid_maps = static:65534" "virtual_gid_maps = static:65534")
  if [ "$SINK" = discard ]; then
    postfix_instance "$name" "$listen" no "${common[@]}" "virtual_transport = discard:"
  else
    postfix_instance "$name" "$listen" no "${common[@]}"
  fi
}

# Maillog "delays=a/b/c/d" averaged: before the queue manager, in the queue, connection set-up
# (including TLS), transmission. Shows where a Postfix A spends a message's time.
delays() {
  grep -o 'delays=[0-9./]*' "$1" | awk -F'[=/]' '{ a += $2; b += $3; c += $4; d += $5; n++ }
    END { if (n) printf "a/b/c/d avg %.3f/%.3f/%.3f/%.3f s over %d", a / n, b / n, c / n, d / n, n }'
}

# With a Postfix B (smtpd_tls_loglevel = 1): TLS sessions B accepted during the last row, and
# how many were full handshakes. Postfix names the server's signature digest ("server-digest
# SHA256") only when it signed, i.e. not for a resumed session.
tls_sessions() {
  local all full
  all=$(grep -c 'TLS connection established from' "$BLOG" 2>/dev/null || true)
  full=$(grep 'TLS connection established from' "$BLOG" 2>/dev/null | grep -c 'server-digest' || true)
  echo "$((all - ${BTLS0:-0})), of which full handshakes (not resumed) $((full - ${BFULL0:-0}))"
}

loadavg() { cut -d' ' -f1 /proc/loadavg; }

ROWS_OUT="$WORK/rows"
run_row() { # label target-addr a-cgroup b-cgroup done-check...
  local label=$1 target=$2 cga=$3 cgb=$4
  shift 4
  local a0 b0 a1 b1 t0 t1 la0 la1
  la0=$(loadavg)
  a0=$(cg_usec "$cga")
  b0=$(cg_usec "$cgb")
  t0=$(date +%s.%N)
  timeout "$LIMIT" smtp-source -s "$SESS" -l "$SIZE" -m "$N" -f load@src.example -t user@sink.example "$target"
  wait_until "$LIMIT" "$@"
  t1=$(date +%s.%N)
  a1=$(cg_usec "$cga")
  b1=$(cg_usec "$cgb")
  la1=$(loadavg)
  echo "$label $N $t0 $t1 $((a1 - a0)) $((b1 - b0)) $la0 $la1" | awk '{
    s = $4 - $3
    printf "%-22s %6d msgs %8.2f s %8.1f msg/s  CPU/msg A %6.2f ms  B %6.2f ms  load %s -> %s\n",
      $1, $2, s, $2 / s, $5 / 1000 / $2, $6 / 1000 / $2, $7, $8 }' | tee -a "$ROWS_OUT"
}

echo "relay throughput: N=$N SIZE=$SIZE SESS=$SESS SINK=$SINK, $(nproc) cores, $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "smtplab: $SMTPLAB${SMTPLAB_BEFORE:+; smtplab-before: $SMTPLAB_BEFORE}; $(postconf -d mail_version)"

if [ "$SINK" = discard ]; then
  postfix_sink sink 127.0.98.9:2525
  SHARED_B="$WORK/pf-sink"
fi
# B for a row: prints "listen cgroup done-check..." after starting it if it is not shared.
sent_in() { # maillog count: B's "status=sent" lines, counting from this row's start
  local log=$1 base=$2 want=$3
  sent_at_least "$log" $((base + want))
}

row() { # label kind(postfix|smtplab) tls(yes|no) reuse(yes|no) a-listen b-listen
  local label=$1 kind=$2 tls=$3 reuse=$4 alisten=$5 blisten=$6
  local bname=${label}-b cgb check
  if [ "$SINK" = discard ]; then
    blisten=127.0.98.9:2525
    cgb="$CGROOT/smtplab-bench-$$-pf-sink"
    local base
    base=$(grep -c 'status=sent' "$SHARED_B/maillog" 2>/dev/null || true)
    check=(sent_in "$SHARED_B/maillog" "$base" "$N")
    BLOG="$SHARED_B/maillog"
    BTLS0=$(grep -c 'TLS connection established from' "$BLOG" || true)
    BFULL0=$(grep 'TLS connection established from' "$BLOG" | grep -c 'server-digest' || true)
  elif [ "$kind" = postfix ]; then
    postfix_sink "$bname" "$blisten"
    cgb="$CGROOT/smtplab-bench-$$-pf-$bname"
    check=(sent_in "$WORK/pf-$bname/maillog" 0 "$N")
    BLOG="$WORK/pf-$bname/maillog" BTLS0=0 BFULL0=0
  else
    smtplab_relay "$bname" "$blisten" --local-domain sink.example --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem"
    cgb="$CGROOT/smtplab-bench-$$-sl-$bname"
    check=(files_at_least "$WORK/sl-$bname/mail" "$N")
    BLOG=
  fi
  local aname=${label}-a level
  if [ "$kind" = postfix ]; then
    [ "$tls" = yes ] && level=encrypt || level=none
    postfix_instance "$aname" "$alisten" "$reuse" "relayhost = [${blisten%:*}]:${blisten#*:}" \
      "smtp_bind_address = ${alisten%:*}" "smtp_tls_security_level = $level"
    run_row "$label" "$alisten" "$CGROOT/smtplab-bench-$$-pf-$aname" "$cgb" "${check[@]}"
    echo "    A $(delays "$WORK/pf-$aname/maillog"); TLS sessions A->B: $(tls_sessions)"
    stop_postfix "$WORK/pf-$aname"
  else
    [ "$tls" = yes ] && level=encrypt || level=none
    local reuse_flags=()
    # shellcheck disable=SC2206 # word splitting of the flags is meant
    [ "$reuse" = yes ] && reuse_flags=(${REUSE_FLAGS:---connection-reuse on-demand --destination-concurrency 5}
      --records "$WORK/sl-$aname.sessions.jsonl")
    smtplab_relay "$aname" "$alisten" --route "sink.example=$blisten" --relay-domain sink.example --outbound-tls "$level" \
      --inbound-tls none --bind "${alisten%:*}" "${reuse_flags[@]}"
    local perf_pid=
    if [ -n "${PROFILE:-}" ]; then
      # PROFILE=FILE: perf samples of relay A (all threads) while the load runs, with DWARF
      # call chains (the release profile keeps line tables; Rust omits frame pointers).
      perf record -q -F 499 --call-graph dwarf,16384 -p "${PIDS[-1]}" -o "$PROFILE" 2>/dev/null &
      perf_pid=$!
      sleep 1
    fi
    run_row "$label" "$alisten" "$CGROOT/smtplab-bench-$$-sl-$aname" "$cgb" "${check[@]}"
    if [ -n "$perf_pid" ]; then
      kill -INT "$perf_pid"
      wait "$perf_pid" || true
    fi
    [ -n "$BLOG" ] && echo "    TLS sessions A->B: $(tls_sessions)"
    kill -INT "${PIDS[-1]}" 2>/dev/null || true
    # relay_bench (from h-spool on) says at exit how many directory fsyncs its spool ran for
    # how many commits (store, update, remove).
    wait "${PIDS[-1]}" 2>/dev/null || true
    if grep -q 'relay_bench spool:' "$WORK/sl-$aname.log"; then echo "    A $(grep -o 'spool: .*' "$WORK/sl-$aname.log")"; fi
    if [ "$reuse" = yes ]; then
      # Cached sessions write their records when they close: at the latest when A stops.
      wait_until 30 grep -q . "$WORK/sl-$aname.sessions.jsonl" || true
      sleep 1
      echo "    A's outbound sessions: $(grep -c '"direction":"outbound"' "$WORK/sl-$aname.sessions.jsonl" || true)" \
        "for $N messages, $(grep -c '"tls_resumed":true' "$WORK/sl-$aname.sessions.jsonl" || true) of them resumed"
    fi
  fi
  # Stop this row's own B so it does not compete with the next row.
  if [ "$SINK" = own ]; then
    if [ "$kind" = postfix ]; then stop_postfix "$WORK/pf-$bname"; else kill -INT "${PIDS[-2]}" 2>/dev/null || true; fi
  fi
  sleep 1
}

i=0
for r in $ROWS; do
  i=$((i + 1))
  a=127.0.98.$((10 + 2 * i)):2525 b=127.0.98.$((11 + 2 * i)):2525
  case $r in
    postfix) row postfix postfix yes no "$a" "$b" ;;
    postfix-reuse) row postfix-reuse postfix yes yes "$a" "$b" ;;
    smtplab) row smtplab smtplab yes no "$a" "$b" ;;
    smtplab-reuse) row smtplab-reuse smtplab yes yes "$a" "$b" ;;
    smtplab-before)
      RELAY_BIN=$SMTPLAB_BEFORE
      row smtplab-before smtplab yes no "$a" "$b"
      RELAY_BIN=$SMTPLAB
      ;;
    *) echo "unknown row '$r' (postfix, postfix-reuse, smtplab, smtplab-reuse, smtplab-before)" >&2; exit 1 ;;
  esac
done
if [ -n "${PLAIN:-}" ]; then
  i=$((i + 1))
  row postfix-plain postfix no no "127.0.98.$((10 + 2 * i)):2525" "127.0.98.$((11 + 2 * i)):2525"
  i=$((i + 1))
  row smtplab-plain smtplab no no "127.0.98.$((10 + 2 * i)):2525" "127.0.98.$((11 + 2 * i)):2525"
fi

awk '
  { rate[$1] = $2 / $4 }
  END {
    if (rate["postfix"] && rate["smtplab-before"]) printf "ratio smtplab-before/postfix (SMTPLAB_BEFORE, same conditions):           %.2fx\n", rate["smtplab-before"] / rate["postfix"]
    if (rate["smtplab-before"] && rate["smtplab"]) printf "ratio smtplab/smtplab-before:                                           %.2fx\n", rate["smtplab"] / rate["smtplab-before"]
    if (rate["postfix"] && rate["smtplab"]) printf "ratio smtplab/postfix (STARTTLS required, new connection per message): %.2fx\n", rate["smtplab"] / rate["postfix"]
    if (rate["postfix-reuse"] && rate["smtplab-reuse"]) printf "ratio smtplab-reuse/postfix-reuse (connection reuse on both):          %.2fx\n", rate["smtplab-reuse"] / rate["postfix-reuse"]
    if (rate["postfix-reuse"] && rate["smtplab"]) printf "ratio smtplab/postfix-reuse (TLS connection reuse on Postfix only):    %.2fx\n", rate["smtplab"] / rate["postfix-reuse"]
  }' "$ROWS_OUT"
