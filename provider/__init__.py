"""What the providers (kie.ai, sunoapi.org) document and answer: profiles and code tables, job
types and endpoints, per-model limits, the HTTP client, record and callback parsing, tracks."""
