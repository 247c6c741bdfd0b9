"""tracejudge: online scoring of LLM traces. OTLP in, ClickHouse out."""

__version__ = "0.1.0"
