-- The traces page's text condition (added to ui_traces.sql's WHERE only when a text is searched): traces with a
-- span of the page's range whose Input or Output holds the text, case-insensitive. Asked as
-- `lowerUTF8(...) LIKE {text_like}` (the text lower-cased, LIKE's wildcards escaped, between %) in a WHERE so
-- the 4-gram indexes of migration 0011 skip the granules that cannot hold it.
AND TraceId IN (
    SELECT TraceId FROM otel_traces
    WHERE ({project:String} = '' OR Project = {project:String})
      AND Timestamp >= fromUnixTimestamp64Nano({since_ns:Int64})
      AND ({until_ns:Int64} = 0 OR Timestamp < fromUnixTimestamp64Nano({until_ns:Int64}))
      AND (lowerUTF8(Input) LIKE {text_like:String} OR lowerUTF8(Output) LIKE {text_like:String})
)
