-- Scores from rules' scorers (Source EVAL), the API (API) and people (ANNOTATION), on a trace (SpanId '')
-- or a span. ScoreId is deterministic for evaluations (rule id, trace id, span id, scorer name), so a replay
-- or a rescore replaces the row instead of adding one: read with FINAL for the latest row per ScoreId.
-- Partitioned by the scored trace's start, which does not change between rescoring, so replacements land in
-- the partition of the row they replace (ReplacingMergeTree replaces only within a partition).
CREATE TABLE IF NOT EXISTS scores
(
    ScoreId String,
    Project LowCardinality(String),
    TraceId String,
    SpanId String,
    SessionId String,
    Name LowCardinality(String),
    Value Nullable(Float64),
    StringValue String,
    DataType LowCardinality(String),
    Comment String,
    Source LowCardinality(String),
    RuleId String,
    RuleName LowCardinality(String),
    RuleVersion UInt32,
    Scorer LowCardinality(String),
    Model LowCardinality(String),
    Passed Nullable(Bool),
    Error String,
    LatencyMs Float64,
    InputTokens UInt64,
    OutputTokens UInt64,
    CostUsd Float64,
    Metadata Map(LowCardinality(String), String),
    TraceStart DateTime64(9),
    Timestamp DateTime64(6),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_rule_id RuleId TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(Timestamp)
PARTITION BY toYYYYMM(TraceStart)
ORDER BY (Project, Name, ScoreId)
SETTINGS index_granularity = 8192;
