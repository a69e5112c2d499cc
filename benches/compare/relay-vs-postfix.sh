#!/usr/bin/env bash
# Relay throughput, smtplab against Postfix, measured in one run on the same machine.
#
# Topology, identical for both MTAs: smtp-source (Postfix's load generator) submits N messages
# of SIZE bytes over SESS parallel sessions to relay A, which relays every message to relay B
# (durable queues on both), where it is delivered into a mailbox on disk. Throughput is
# N / (time from the first submission until B has delivered the last message). Each MTA runs
# once with plaintext between A and B and once with STARTTLS (`encrypt` on A, TLS 1.3).
#
# Usage (root; Debian's postfix package installed; a release build of smtplab):
#   cargo build --release --bin smtplab
#   N=2000 SIZE=10240 SESS=10 benches/compare/relay-vs-postfix.sh
set -euo pipefail
N=${N:-2000}
SIZE=${SIZE:-10240}
SESS=${SESS:-10}
SMTPLAB=${SMTPLAB:-${CARGO_TARGET_DIR:-target}/release/smtplab}
WORK=$(mktemp -d /tmp/relaybench.XXXXXX)
chmod 755 "$WORK" # Postfix daemons run as the postfix user and must reach their directories
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for d in "$WORK"/pf-*; do [ -d "$d/etc" ] && script -qec "postfix -c $d/etc stop" /dev/null >/dev/null 2>&1 || true; done
  sleep 1
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
[ -x "$SMTPLAB" ] || { echo "build first: cargo build --release --bin smtplab ($SMTPLAB missing)" >&2; exit 1; }

# A throwaway CA and certificates for B (both MTAs use the same files).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=mx.sink.example" \
  -addext "subjectAltName=DNS:mx.sink.example" -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

count_files() { find "$1" -type f 2>/dev/null | wc -l; }

wait_for() { # dir count -> seconds waited (max 600)
  local dir=$1 want=$2 t0
  t0=$(date +%s.%N)
  while [ "$(count_files "$dir")" -lt "$want" ]; do
    sleep 0.05
    if (( $(echo "$(date +%s.%N) - $t0 > 600" | bc) )); then echo "timeout waiting for $dir" >&2; return 1; fi
  done
}

postfix_instance() { # name listen extra-main.cf-lines...
  local name=$1 listen=$2; shift 2
  local d="$WORK/pf-$name"
  mkdir -p "$d/etc" "$d/queue" "$d/data" "$d/mail"
  chown postfix "$d/data"; chown 65534:65534 "$d/mail"
  awk -v L="$listen" '
    /^#/ || /^ / || NF < 8 { print; next }
    $1 == "smtp" && $2 == "inet" { print L " inet n - n - - smtpd"; next }
    { $5 = "n"; print }' /etc/postfix/master.cf > "$d/etc/master.cf"
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
    echo "disable_dns_lookups = yes"
    echo "smtp_dns_support_level = disabled"
    echo "alias_maps ="
    echo "alias_database ="
    echo "virtual_mailbox_domains ="
    echo "virtual_mailbox_base = $d/mail"
    echo "virtual_mailbox_maps = static:inbox/"
    echo "virtual_uid_maps = static:65534"
    echo "virtual_gid_maps = static:65534"
    echo "default_process_limit = 100"
    for l in "$@"; do echo "$l"; done
  } > "$d/etc/main.cf"
  script -qec "postfix -c $d/etc start" /dev/null >/dev/null
  until (echo > /dev/tcp/${listen%:*}/${listen#*:}) 2>/dev/null; do sleep 0.1; done
}

smtplab_relay() { # name listen extra-args...
  local name=$1 listen=$2; shift 2
  "$SMTPLAB" relay --listen "$listen" --hostname "mx.$name.example" --spool "$WORK/sl-$name/spool" \
    --mailbox-dir "$WORK/sl-$name/mail" "$@" >/dev/null 2>&1 &
  PIDS+=($!)
  until (echo > /dev/tcp/${listen%:*}/${listen#*:}) 2>/dev/null; do sleep 0.05; done
}

run_load() { # label source-target mailbox-dir
  local label=$1 target=$2 mbox=$3 t0 t1
  t0=$(date +%s.%N)
  smtp-source -s "$SESS" -l "$SIZE" -m "$N" -f load@src.example -t user@sink.example "$target"
  wait_for "$mbox" "$N"
  t1=$(date +%s.%N)
  local secs rate
  secs=$(echo "$t1 - $t0" | bc -l)
  rate=$(echo "$N / $secs" | bc -l)
  printf '%-28s %8d msgs %8.2f s %10.1f msg/s\n' "$label" "$N" "$secs" "$rate"
  echo "$label $rate" >> "$WORK/results"
}

echo "relay throughput: $N messages of $SIZE bytes, $SESS sessions, $(nproc) cores, $(date -u +%FT%TZ)"

# smtplab, plaintext A -> B
smtplab_relay sinkp 127.0.97.2:2525 --local-domain sink.example --inbound-tls none
smtplab_relay relayp 127.0.97.1:2525 --route sink.example=127.0.97.2:2525 --outbound-tls none --inbound-tls none --bind 127.0.97.1
run_load "smtplab plaintext" 127.0.97.1:2525 "$WORK/sl-sinkp/mail"

# smtplab, STARTTLS A -> B
smtplab_relay sinkt 127.0.97.4:2525 --local-domain sink.example --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem"
smtplab_relay relayt 127.0.97.3:2525 --route sink.example=127.0.97.4:2525 \
  --outbound-tls encrypt --inbound-tls none --bind 127.0.97.3
run_load "smtplab STARTTLS" 127.0.97.3:2525 "$WORK/sl-sinkt/mail"

# Postfix, plaintext A -> B
postfix_instance sinkp2 127.0.98.2:2525 "virtual_mailbox_domains = sink.example"
postfix_instance relayp2 127.0.98.1:2525 "relayhost = [127.0.98.2]:2525" "smtp_bind_address = 127.0.98.1" "smtp_tls_security_level = none"
run_load "postfix plaintext" 127.0.98.1:2525 "$WORK/pf-sinkp2/mail"

# Postfix, STARTTLS A -> B
postfix_instance sinkt2 127.0.98.4:2525 "virtual_mailbox_domains = sink.example" \
  "smtpd_tls_cert_file = $WORK/cert.pem" "smtpd_tls_key_file = $WORK/key.pem" "smtpd_tls_security_level = may"
postfix_instance relayt2 127.0.98.3:2525 "relayhost = [127.0.98.4]:2525" "smtp_bind_address = 127.0.98.3" "smtp_tls_security_level = encrypt"
run_load "postfix STARTTLS" 127.0.98.3:2525 "$WORK/pf-sinkt2/mail"

awk '
  { r[$1" "$2] = $3 }
  END {
    printf "ratio smtplab/postfix plaintext: %.2fx\n", r["smtplab plaintext"] / r["postfix plaintext"]
    printf "ratio smtplab/postfix STARTTLS:  %.2fx\n", r["smtplab STARTTLS"] / r["postfix STARTTLS"]
    printf "STARTTLS cost, smtplab: %.2fx the plaintext time; postfix: %.2fx\n", r["smtplab plaintext"] / r["smtplab STARTTLS"], r["postfix plaintext"] / r["postfix STARTTLS"]
  }' "$WORK/results"
