"""tracejudge's edges: OTLP receivers and write-ahead log, ClickHouse, HTTP API."""
