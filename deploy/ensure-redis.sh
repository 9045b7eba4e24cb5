#!/usr/bin/env bash
# Make sure redis-server and redis-sentinel exist (tests and the demo start their own on
# loopback; tests/integration/test_sentinel.py starts a primary, a replica and three sentinels).
exec bash "$(dirname "$0")/ensure-packages.sh" redis-server=redis-server redis-sentinel=redis-sentinel
