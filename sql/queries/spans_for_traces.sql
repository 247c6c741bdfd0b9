-- Every stored span of the given traces, newest copy of each span only. Parameter: trace_ids (Array(String)).
SELECT
    TraceId, SpanId, ParentSpanId, SpanName, SpanKind, StatusCode, StatusMessage, ServiceName, Project,
    SessionId, Timestamp, Duration, Input, Output, SpanAttributes, ResourceAttributes
FROM otel_traces
WHERE TraceId IN {trace_ids:Array(String)}
ORDER BY TraceId, Timestamp, SpanId
LIMIT 1 BY TraceId, SpanId
