-- What each process decided per rule, cumulative: one row per (rule, process), the latest (FINAL) wins.
-- GET /api/v1/rules/{id}/status sums the processes.
CREATE TABLE IF NOT EXISTS rule_status
(
    RuleId String,
    Process String,
    RuleVersion UInt32,
    TracesSeen UInt64,
    FilteredOut UInt64,
    NotTargeted UInt64,
    SampledOut UInt64,
    Scored UInt64,
    ScorerErrors UInt64,
    LastEvaluatedAt DateTime64(6),
    LastTraceAt DateTime64(9),
    UpdatedAt DateTime64(6)
)
ENGINE = ReplacingMergeTree(UpdatedAt)
ORDER BY (RuleId, Process);
