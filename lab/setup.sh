#!/usr/bin/env bash
# Prepare what the harestart lab needs, on a fresh Debian 12 machine (root, no Docker engine
# running, no container registry) as well as on a laptop where Docker already runs.
#
#   lab/setup.sh docker          make sure a Docker engine answers (install + start dockerd if needed)
#   lab/setup.sh base [FLAVOR]   print the base image FLAVOR builds FROM (pull, or build with mmdebstrap)
#   lab/setup.sh image [FLAVOR]  build harestart-lab:FLAVOR from lab/ (default: every flavour)
#   lab/setup.sh secrets         generate lab/.secrets/ (SSH keys, known_hosts, passwords) if absent
#   lab/setup.sh all             docker + every image + secrets
#
# FLAVOR: mariadb (Debian 12 bookworm: MariaDB 10.11, lab/Dockerfile; the default for `base`)
#         mysql   (Debian sid: Oracle MySQL 9.7, lab/Dockerfile.mysql)
#         all     (image only: both)
# Chatter goes to stderr; `base` prints only the image name on stdout.
set -euo pipefail

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SECRETS_DIR=${LAB_SECRETS_DIR:-$LAB_DIR/.secrets}
FLAVORS=(mariadb mysql)
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/harestart-dockerd.log}

say() { printf 'lab/setup.sh: %s\n' "$*" >&2; }
fail() { printf 'lab/setup.sh: %s\n' "$*" >&2; exit 1; }

# Per flavour: the Debian suite its image is built from, and its Dockerfile.
check_flavor() {
  case "$1" in
    mariadb | mysql) ;;
    *) fail "unknown flavour '$1' (expected: ${FLAVORS[*]})" ;;
  esac
}
flavor_suite() { if [[ $1 == mysql ]]; then echo sid; else echo bookworm; fi; }
flavor_dockerfile() { if [[ $1 == mysql ]]; then echo "$LAB_DIR/Dockerfile.mysql"; else echo "$LAB_DIR/Dockerfile"; fi; }
flavor_image() { echo "harestart-lab:$1"; }

docker_answers() { docker info >/dev/null 2>&1; }

APT_UPDATED=0
apt_install() {
  # apt_install PKG...: install the packages not yet installed (apt-get update once).
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  if ((APT_UPDATED == 0)); then
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    APT_UPDATED=1
  fi
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

can_apt() { command -v apt-get >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; }

cmd_docker() {
  if docker_answers; then
    return 0
  fi
  if ! can_apt; then
    if command -v docker >/dev/null 2>&1; then
      local why
      why=$(docker info 2>&1 | grep -iE 'error|denied|cannot' | head -n 1 | tr -s ' ' || true)
      fail "Docker is not available: 'docker info' fails${why:+ ($why)}; start the Docker daemon (or get access to it) and retry."
    fi
    fail "Docker is not available: install Docker (or run as root on Debian/Ubuntu so lab/setup.sh can install docker.io) and retry."
  fi
  local pkgs=()
  command -v dockerd >/dev/null 2>&1 || pkgs+=(docker.io)
  command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || pkgs+=(docker-compose)
  command -v mmdebstrap >/dev/null 2>&1 || pkgs+=(mmdebstrap)
  if ((${#pkgs[@]})); then
    apt_install "${pkgs[@]}" || fail "Docker is not available: 'apt-get install ${pkgs[*]}' failed."
  fi
  if ! pgrep -x dockerd >/dev/null 2>&1; then
    say "starting dockerd in the background (log: $DOCKERD_LOG)"
    mkdir -p "$(dirname "$DOCKERD_LOG")"
    # setsid: the engine must outlive this script and the shell that ran it.
    setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
  fi
  local deadline=$((SECONDS + 60))
  until docker_answers; do
    if ((SECONDS >= deadline)); then
      fail "Docker is not available: dockerd did not answer 'docker info' within 60 s (see $DOCKERD_LOG)."
    fi
    sleep 1
  done
  say "Docker engine is up"
}

image_present() { docker image inspect "$1" >/dev/null 2>&1; }

# The machine's own apt sources, for mmdebstrap (never a mirror written into the repo).
apt_sources_file() {
  local f
  for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
    if [[ -s $f ]]; then
      printf '%s\n' "$f"
      return 0
    fi
  done
  return 1
}

# The machine's Debian mirror (its first non-security URI), for suites its sources do not list
# (sid on a bookworm machine): mmdebstrap would otherwise install whatever suites the file names.
apt_mirror() {
  local f
  f=$(apt_sources_file) || return 1
  awk '
    /^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }
    /^deb[ \t]/ { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i ~ /:\/\//) { if ($i !~ /security/) { print $i; exit } break } }
  ' "$f" | grep . || return 1
}

cmd_base() {
  local flavor=${1:-mariadb} suite upstream local_base
  check_flavor "$flavor"
  suite=$(flavor_suite "$flavor")
  upstream=debian:$suite
  local_base=harestart/debian:$suite
  if image_present "$upstream"; then
    printf '%s\n' "$upstream"
    return 0
  fi
  if image_present "$local_base"; then
    printf '%s\n' "$local_base"
    return 0
  fi
  say "trying 'docker pull $upstream'"
  if timeout 30 docker pull -q "$upstream" >&2 2>/dev/null; then
    printf '%s\n' "$upstream"
    return 0
  fi
  say "no registry; building $local_base with mmdebstrap from this machine's apt sources"
  if ! command -v mmdebstrap >/dev/null 2>&1; then
    can_apt || fail "cannot build a base image: mmdebstrap is missing and no registry answers."
    apt_install mmdebstrap
  fi
  local source opts=()
  if [[ $suite == bookworm ]]; then
    source=$(apt_sources_file) || fail "cannot build a base image: no apt sources found in /etc/apt and no registry to pull $upstream from."
  else
    source=$(apt_mirror) || fail "cannot build a base image: no Debian mirror found in /etc/apt and no registry to pull $upstream from."
    # A mirror that is a frozen snapshot serves a sid Release file past its Valid-Until date;
    # mmdebstrap also writes this option into the image, so apt-get in the Dockerfile works too.
    opts+=(--aptopt='Acquire::Check-Valid-Until "false"')
  fi
  mmdebstrap --quiet --variant=minbase "${opts[@]}" "$suite" - "$source" | docker import - "$local_base" >&2 \
    || fail "cannot build a base image: mmdebstrap | docker import failed."
  printf '%s\n' "$local_base"
}

build_image() {
  local flavor=$1 base image dockerfile
  image=$(flavor_image "$flavor")
  dockerfile=$(flavor_dockerfile "$flavor")
  base=$(cmd_base "$flavor")
  say "building $image FROM $base"
  docker build -q --build-arg "BASE_IMAGE=$base" -f "$dockerfile" -t "$image" "$LAB_DIR" >&2 \
    || fail "building $image failed (run 'docker build --build-arg BASE_IMAGE=$base -f $dockerfile $LAB_DIR' to see why)."
  say "image $image ready"
}

cmd_image() {
  local flavor=${1:-all}
  if [[ $flavor == all ]]; then
    for flavor in "${FLAVORS[@]}"; do build_image "$flavor"; done
  else
    check_flavor "$flavor"
    build_image "$flavor"
  fi
}

random_password() {
  # 24 alphanumeric characters from the kernel's CSPRNG.
  local p
  p=$(LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 24) || true
  printf '%s' "$p"
}

cmd_secrets() {
  if ! command -v ssh-keygen >/dev/null 2>&1; then
    can_apt || fail "ssh-keygen is missing: install openssh-client and retry."
    apt_install openssh-client
  fi
  umask 077
  mkdir -p "$SECRETS_DIR/keys"
  chmod 0700 "$SECRETS_DIR" "$SECRETS_DIR/keys"
  local keys=$SECRETS_DIR/keys
  if [[ ! -f $keys/id_ed25519 ]]; then
    ssh-keygen -q -t ed25519 -N '' -C harestart-lab-client -f "$keys/id_ed25519"
    say "generated client key $keys/id_ed25519"
  fi
  if [[ ! -f $keys/ssh_host_ed25519_key ]]; then
    ssh-keygen -q -t ed25519 -N '' -C harestart-lab-host -f "$keys/ssh_host_ed25519_key"
    say "generated lab host key $keys/ssh_host_ed25519_key"
  fi
  if [[ ! -f $SECRETS_DIR/known_hosts ]]; then
    local hostkey port
    hostkey=$(cut -d' ' -f1,2 "$keys/ssh_host_ed25519_key.pub")
    for port in 2210 2211 2212 2213; do
      printf '[127.0.0.1]:%s %s\n' "$port" "$hostkey"
    done >"$SECRETS_DIR/known_hosts"
  fi
  if [[ ! -f $SECRETS_DIR/lab.env ]]; then
    {
      echo "# Generated by lab/setup.sh secrets; never commit."
      echo "LAB_ADMIN_USER=harestart"
      echo "LAB_ADMIN_PASSWORD=$(random_password)"
      echo "LAB_REPL_PASSWORD=$(random_password)"
      echo "LAB_MHA_PASSWORD=$(random_password)"
    } >"$SECRETS_DIR/lab.env"
    say "generated passwords in $SECRETS_DIR/lab.env"
  fi
  if [[ ! -f $SECRETS_DIR/mysql_password ]]; then
    # The admin password alone, no trailing newline.
    grep '^LAB_ADMIN_PASSWORD=' "$SECRETS_DIR/lab.env" | cut -d= -f2- | tr -d '\n' >"$SECRETS_DIR/mysql_password"
  fi
  chmod 0600 "$keys"/* "$SECRETS_DIR/known_hosts" "$SECRETS_DIR/lab.env" "$SECRETS_DIR/mysql_password"
}

usage() {
  sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

case "${1:-}" in
  docker) cmd_docker ;;
  base) cmd_base "${2:-mariadb}" ;;
  image) cmd_image "${2:-all}" ;;
  secrets) cmd_secrets ;;
  all) cmd_docker; cmd_image; cmd_secrets ;;
  *) usage ;;
esac
