-- Scores, newest first (Timestamp, then ScoreId, both descending), the latest row per ScoreId (FINAL).
-- Every filter is a parameter, '' (0 for the times) meaning any: project, trace_id, span_id, session_id, name,
-- source, rule_id, score_id; since_us <= Timestamp < until_us (Unix microseconds). Paging: has_cursor 1 and
-- the previous page's last (cursor_us, cursor_id) continue after that row. limit: most rows.
SELECT
    ScoreId, Project, TraceId, SpanId, SessionId, DatasetRunId, Name, Value, StringValue, DataType, Comment,
    Source, ConfigId, RuleId, RuleName, RuleVersion, Scorer, Model, Passed, Error, LatencyMs, InputTokens,
    OutputTokens, CostUsd, Metadata,
    toUnixTimestamp64Nano(TraceStart) AS TraceStartNs,
    toUnixTimestamp64Micro(Timestamp) AS TimestampUs
FROM scores FINAL
WHERE ({project:String} = '' OR Project = {project:String})
  AND ({trace_id:String} = '' OR TraceId = {trace_id:String})
  AND ({span_id:String} = '' OR SpanId = {span_id:String})
  AND ({session_id:String} = '' OR SessionId = {session_id:String})
  AND ({name:String} = '' OR Name = {name:String})
  AND ({source:String} = '' OR Source = {source:String})
  AND ({rule_id:String} = '' OR RuleId = {rule_id:String})
  AND ({score_id:String} = '' OR ScoreId = {score_id:String})
  AND ({since_us:Int64} = 0 OR toUnixTimestamp64Micro(Timestamp) >= {since_us:Int64})
  AND ({until_us:Int64} = 0 OR toUnixTimestamp64Micro(Timestamp) < {until_us:Int64})
  AND ({has_cursor:UInt8} = 0
       OR (toUnixTimestamp64Micro(Timestamp), ScoreId) < ({cursor_us:Int64}, {cursor_id:String}))
ORDER BY Timestamp DESC, ScoreId DESC
LIMIT {limit:UInt32}
