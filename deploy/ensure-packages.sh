#!/usr/bin/env bash
# Make sure commands exist, installing the Debian package of each one missing:
#   bash deploy/ensure-packages.sh COMMAND=PACKAGE ...
# Idempotent and quiet: does nothing when every command is there; otherwise one apt-get
# install of what is missing (after one apt-get update per hour: the stamp below), with apt's
# own output shown only when it fails. deploy/ensure-redis.sh and deploy/ensure-browser.sh
# name what the demo and the tests need.
set -o errexit -o pipefail -o nounset
missing=()
for pair in "$@"; do
  command -v "${pair%%=*}" >/dev/null 2>&1 || missing+=("${pair#*=}")
done
if [ "${#missing[@]}" = 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "${missing[*]} missing: install (Debian: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
stamp=/tmp/.backbeat-apt-updated
export DEBIAN_FRONTEND=noninteractive
if [ -z "$(find "$stamp" -mmin -60 2>/dev/null)" ]; then
  if ! out=$(apt-get update -qq 2>&1); then echo "$out" >&2; exit 1; fi
  touch "$stamp"
fi
if ! out=$(apt-get install -y -qq --no-install-recommends "${missing[@]}" 2>&1); then
  echo "$out" >&2
  exit 1
fi
