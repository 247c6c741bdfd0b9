-- Each given trace's root span in a project, as `Trace.root` picks it (the earliest span without a parent, by
-- start then span id), one copy, read between the earliest and the latest of the traces' root starts (which
-- the job's plan found: the bound spares most granules, as the sort key ends with the time). A trace with no
-- root there is absent. Parameters: trace_ids (Array(String)), project (String), lo and hi (Int64, ns).
SELECT
    TraceId, SpanId, ParentSpanId, SpanName, SpanKind, StatusCode, StatusMessage, ServiceName, Project,
    SessionId, Timestamp, Duration, Input, Output, SpanAttributes, ResourceAttributes
FROM otel_traces
WHERE Project = {project:String} AND TraceId IN {trace_ids:Array(String)} AND ParentSpanId = ''
  AND Timestamp >= fromUnixTimestamp64Nano({lo:Int64}) AND Timestamp <= fromUnixTimestamp64Nano({hi:Int64})
ORDER BY TraceId, Timestamp, SpanId
LIMIT 1 BY TraceId
