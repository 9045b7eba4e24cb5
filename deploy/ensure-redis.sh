#!/usr/bin/env bash
# Make sure redis-server and redis-sentinel exist (tests and the demo start their own on
# loopback; tests/integration/test_sentinel.py starts a primary, a replica and three sentinels).
# Idempotent and quiet: installs only what is missing (Debian packages redis-server and
# redis-sentinel), and does nothing when both are there.
set -o errexit -o pipefail -o nounset
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
if [ "${#missing[@]}" = 0 ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  # quiet unless it fails (then apt's own output says why)
  if ! out=$(apt-get update -qq 2>&1 &&
             DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" 2>&1); then
    echo "$out" >&2
    exit 1
  fi
else
  echo "${missing[*]} missing: install (Debian: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
