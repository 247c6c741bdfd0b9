-- The UI's traces page, step 2: the columns of the page's traces (at most a page of ids). Parameters: trace_ids,
-- since_ns (the page's time range: spans before it are not read).
SELECT
    TraceId AS trace_id,
    any(Project) AS project,
    toUnixTimestamp64Nano(min(Timestamp)) AS start_ns,
    max(toUnixTimestamp64Nano(Timestamp) + Duration) - toUnixTimestamp64Nano(min(Timestamp)) AS duration_ns,
    count() AS spans,
    argMinIf(SpanName, Timestamp, ParentSpanId = '') AS root_name,
    substringUTF8(argMinIf(Input, Timestamp, ParentSpanId = ''), 1, 300) AS root_input,
    substringUTF8(argMinIf(Output, Timestamp, ParentSpanId = ''), 1, 300) AS root_output,
    countIf(StatusCode = 'Error') AS error_spans,
    anyIf(SessionId, SessionId != '') AS session_id
FROM otel_traces
WHERE TraceId IN {trace_ids:Array(String)} AND Timestamp >= fromUnixTimestamp64Nano({since_ns:Int64})
GROUP BY TraceId
