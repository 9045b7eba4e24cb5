#!/usr/bin/env bash
# Make sure a redis-server binary exists (tests and the demo start their own on loopback).
set -o errexit -o pipefail -o nounset
if command -v redis-server >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
else
  echo "redis-server is missing: install it (Debian: sudo apt-get install redis-server)" >&2
  exit 1
fi
