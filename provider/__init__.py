"""What the providers (kie.ai, sunoapi.org) document and answer: profiles and code tables, job
types and endpoints, per-model limits, the request params schemas, the HTTP client (which builds
the create body), record and callback parsing, tracks."""
