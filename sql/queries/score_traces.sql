-- The stored traces among trace_ids (32 lower-case hex chars each): project and first span time, which a
-- score posted through the API takes (tracejudge's judge spans aside).
SELECT
    TraceId,
    argMin(Project, Timestamp) AS Project,
    toUnixTimestamp64Nano(min(Timestamp)) AS StartNs
FROM otel_traces
WHERE TraceId IN {trace_ids:Array(String)} AND ScopeName != 'tracejudge.judge'
GROUP BY TraceId
