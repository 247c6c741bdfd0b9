-- Each given trace's root span, as `Trace.root` picks it (the earliest span without a parent, by start then
-- span id), one copy. A trace with no root stored is absent. Parameter: trace_ids (Array(String)).
SELECT
    TraceId, SpanId, ParentSpanId, SpanName, SpanKind, StatusCode, StatusMessage, ServiceName, Project,
    SessionId, Timestamp, Duration, Input, Output, SpanAttributes, ResourceAttributes
FROM otel_traces
WHERE TraceId IN {trace_ids:Array(String)} AND ParentSpanId = ''
ORDER BY TraceId, Timestamp, SpanId
LIMIT 1 BY TraceId
