"""The HTTP API: REST under /v1/, health endpoints, and later docs, events and metrics."""
