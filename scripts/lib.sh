# Shared by the scripts in this folder: install Debian packages only when missing.
# shellcheck shell=bash

ensure_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing Debian packages: ${missing[*]}" >&2
  # Postfix asks questions at install time unless told the answers.
  echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
  echo "postfix postfix/mailname string smtplab.invalid" | $sudo debconf-set-selections
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# What building and running smtplab needs.
RUNTIME_PACKAGES=(libpcap-dev pkg-config iproute2)
# What the test suite needs besides: real peers and tools it checks against.
TEST_PACKAGES=(python3 tshark postfix postfix-mta-sts-resolver swaks libnet-ssleay-perl libio-socket-ssl-perl openssl chromium util-linux slurm-wlm munge unbound)
# What building the Shadow simulator needs (scripts/install-shadow; network.backend = "shadow").
SHADOW_PACKAGES=(cmake make gcc g++ libclang-dev libglib2.0-dev python3 python3-networkx xz-utils util-linux findutils netbase libc6-dbg git)
