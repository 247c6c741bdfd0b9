-- The latest spans that carry derived Input and Output text, with their project and session.
SELECT
    Timestamp,
    Project,
    SessionId,
    TraceId,
    SpanName,
    substring(Input, 1, 120) AS InputStart,
    substring(Output, 1, 120) AS OutputStart
FROM otel_traces
WHERE Input != '' OR Output != ''
ORDER BY Timestamp DESC
LIMIT 20
