-- The UI's traces page, step 1: which traces are on the page (ids and starts only, newest first, after a
-- cursor), with the page's filters. Reads no Input/Output unless a text is searched: the text condition
-- (`ui_traces_text.sql`) is added to WHERE only then, since even `'' = '' OR ...` makes ClickHouse read both
-- columns of every span in the range (3.1 s against 0.2 s at 1M spans, bench/ui.py). Parameters: project,
-- since_ns, until_ns, name (a span name), errors (1: traces with an error span), session_id, use_scores and
-- score_trace_ids (traces meeting the score condition, ui_score_filter.sql), cursor_ns, cursor_id, limit;
-- text_like with a text.
SELECT TraceId AS trace_id, toUnixTimestamp64Nano(min(Timestamp)) AS start_ns
FROM otel_traces
WHERE ({project:String} = '' OR Project = {project:String})
  AND Timestamp >= fromUnixTimestamp64Nano({since_ns:Int64})
  AND ({until_ns:Int64} = 0 OR Timestamp < fromUnixTimestamp64Nano({until_ns:Int64}))
  AND ({use_scores:UInt8} = 0 OR TraceId IN {score_trace_ids:Array(String)})
  /*TEXT*/
GROUP BY TraceId
HAVING ({name:String} = '' OR countIf(SpanName = {name:String}) > 0)
   AND ({errors:UInt8} = 0 OR countIf(StatusCode = 'Error') > 0)
   AND ({session_id:String} = '' OR countIf(SessionId = {session_id:String}) > 0)
   AND ({cursor_id:String} = '' OR (start_ns, trace_id) < ({cursor_ns:Int64}, {cursor_id:String}))
ORDER BY start_ns DESC, trace_id DESC
LIMIT {limit:UInt32}
