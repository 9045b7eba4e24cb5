"""The development harness: local processes (Redis, workers, beat, web, simulator) for the demo
and the tests. Production code never imports it."""
