#!/usr/bin/env bash
# Make sure promtool and prometheus (Debian's `prometheus` package) are on PATH, for
# `make lint` (promtool check/test rules) and tests/integration/test_prometheus.py.
#
#   monitoring/setup.sh          install the package when promtool or prometheus is missing
#
# The package's maintainer scripts start a "prometheus" service (listening on :9090); harestart
# only needs the binaries. So the install runs with a policy-rc.d that forbids starting services
# (exit 101: invoke-rc.d and deb-systemd-invoke skip the start), unless the machine already has
# one. Without an init system (a container, CI) invoke-rc.d already blocks and the install exits
# 0 either way (checked in a Debian 12 container); on a host with an init system it would start.
# Chatter goes to stderr.
set -euo pipefail

say() { printf 'monitoring/setup.sh: %s\n' "$*" >&2; }
fail() { printf 'monitoring/setup.sh: %s\n' "$*" >&2; exit 1; }

have_binaries() { command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; }

if have_binaries; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || [[ $(id -u) -ne 0 ]]; then
  fail "promtool/prometheus are missing: install Prometheus 2.42 or later (Debian/Ubuntu: 'apt-get install prometheus', or run this script as root) and retry."
fi

POLICY=/usr/sbin/policy-rc.d
placed_policy=0
remove_policy() { if ((placed_policy)); then rm -f "$POLICY"; fi; }
trap remove_policy EXIT
if [[ ! -e $POLICY ]]; then
  printf '#!/bin/sh\n# monitoring/setup.sh: no service starts during its install\nexit 101\n' >"$POLICY"
  chmod 0755 "$POLICY"
  placed_policy=1
fi

say "apt-get update"
DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || fail "'apt-get update' failed."
say "installing prometheus (promtool and the prometheus binary; its service is not started)"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >&2 \
  || fail "'apt-get install prometheus' failed."
have_binaries || fail "the prometheus package is installed but promtool/prometheus are not on PATH."
say "$(promtool --version 2>&1 | head -n 1)"
