-- The scores of a page of traces, for the UI's score chips. Parameter: trace_ids.
SELECT TraceId, SpanId, Name, Value, StringValue, Passed, Error, Source
FROM scores FINAL
WHERE TraceId IN {trace_ids:Array(String)}
ORDER BY TraceId, SpanId = '' DESC, Name
