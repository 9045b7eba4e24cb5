"""What producers and callers touch: the HTTP API, the Python client and the CLI."""
