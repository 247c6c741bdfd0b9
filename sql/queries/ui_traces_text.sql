-- The traces page's text condition (added to ui_traces.sql's WHERE only when a text is searched): traces with a
-- span of the page's range whose Input or Output holds the text, case-insensitive. Asked as
-- `lowerUTF8(...) LIKE {text_like}` (the text lower-cased, LIKE's wildcards escaped, between %) in a WHERE, which
-- is as fast as the HAVING countIf(positionCaseInsensitiveUTF8(...)) it replaces and lets a data-skipping index
-- on `lowerUTF8(Input)` / `lowerUTF8(Output)` skip granules. No such index is created by default: a 4-gram bloom
-- filter made a rare text's search 20x faster but spans' inserts 3.6x slower (bench/RESULTS.md, "UI"); an
-- operator who searches more than they ingest can add it by hand (the statements are there).
AND TraceId IN (
    SELECT TraceId FROM otel_traces
    WHERE ({project:String} = '' OR Project = {project:String})
      AND Timestamp >= fromUnixTimestamp64Nano({since_ns:Int64})
      AND ({until_ns:Int64} = 0 OR Timestamp < fromUnixTimestamp64Nano({until_ns:Int64}))
      AND (lowerUTF8(Input) LIKE {text_like:String} OR lowerUTF8(Output) LIKE {text_like:String})
)
