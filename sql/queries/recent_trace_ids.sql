-- The most recent traces of a project (by their latest span), for "test rule". Parameters: project,
-- since_ns (Unix nanoseconds; 0 for no bound), limit.
SELECT TraceId
FROM otel_traces
WHERE Project = {project:String}
  AND Timestamp >= fromUnixTimestamp64Nano({since_ns:Int64})
GROUP BY TraceId
ORDER BY max(Timestamp) DESC, TraceId
LIMIT {limit:UInt32}
