-- The UI's traces page: one page of traces, newest first, after a cursor, with the page's filters. Every
-- filter is a parameter ('' or 0: not applied). Parameters: project, since_ns, until_ns, name (a span name),
-- text (in any span's input or output, any case), errors (1: traces with an error span), session_id,
-- score_ids (traces whose scores match the score condition: see ui_score_filter.sql), use_scores,
-- cursor_ns, cursor_id (0, '': the first page), limit.
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
WHERE ({project:String} = '' OR Project = {project:String})
  AND Timestamp >= fromUnixTimestamp64Nano({since_ns:Int64})
  AND ({until_ns:Int64} = 0 OR Timestamp < fromUnixTimestamp64Nano({until_ns:Int64}))
  AND ({use_scores:UInt8} = 0 OR TraceId IN {score_trace_ids:Array(String)})
GROUP BY TraceId
HAVING ({name:String} = '' OR countIf(SpanName = {name:String}) > 0)
   AND ({text:String} = '' OR countIf(positionCaseInsensitiveUTF8(Input, {text:String}) > 0
                                      OR positionCaseInsensitiveUTF8(Output, {text:String}) > 0) > 0)
   AND ({errors:UInt8} = 0 OR error_spans > 0)
   AND ({session_id:String} = '' OR countIf(SessionId = {session_id:String}) > 0)
   AND ({cursor_id:String} = '' OR (start_ns, trace_id) < ({cursor_ns:Int64}, {cursor_id:String}))
ORDER BY start_ns DESC, trace_id DESC
LIMIT {limit:UInt32}
