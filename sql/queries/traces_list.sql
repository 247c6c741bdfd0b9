-- Recent traces, newest first, optionally for one project. Parameters: project ('' for all), projects (an
-- API key's projects; [] for all), since_ns (start time lower bound, Unix nanoseconds), limit.
SELECT
    TraceId AS trace_id,
    any(Project) AS project,
    toUnixTimestamp64Nano(min(Timestamp)) AS start_ns,
    max(toUnixTimestamp64Nano(Timestamp) + Duration) - toUnixTimestamp64Nano(min(Timestamp)) AS duration_ns,
    count() AS spans,
    argMinIf(SpanName, Timestamp, ParentSpanId = '') AS root_name,
    argMinIf(Input, Timestamp, ParentSpanId = '') AS root_input,
    argMinIf(Output, Timestamp, ParentSpanId = '') AS root_output,
    countIf(StatusCode = 'Error') AS error_spans
FROM otel_traces
WHERE ({project:String} = '' OR Project = {project:String})
  AND (empty({projects:Array(String)}) OR has({projects:Array(String)}, Project))
  AND Timestamp >= fromUnixTimestamp64Nano({since_ns:Int64})
GROUP BY TraceId
ORDER BY start_ns DESC
LIMIT {limit:UInt32}
