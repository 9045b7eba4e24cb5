"""The peers of benchmark ``peers`` (tests/bench/bench_peers.py): small real apps, each the way a
user of its library would write it to respect the provider's rule (20 create calls in any
10 s), run as real worker processes against the bench's Redis (one database each)."""
