-- The span ids stored for the given traces, judge spans left out, and no text column read: enough to tell
-- whether spans of a trace reached another process (dataflow/scoring/foreign.py). Bounded by the projects (the
-- sort key's first column) and the spans' start times (the partition, and the sort key's time within a span
-- name), so a batch's query reads few granules. Parameters: trace_ids and projects (Array(String)), lo and hi
-- (Int64, ns).
SELECT TraceId, SpanId
FROM otel_traces
WHERE Project IN {projects:Array(String)} AND TraceId IN {trace_ids:Array(String)}
  AND Timestamp >= fromUnixTimestamp64Nano({lo:Int64}) AND Timestamp <= fromUnixTimestamp64Nano({hi:Int64})
  AND ScopeName != 'tracejudge.judge'
