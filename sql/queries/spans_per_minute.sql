-- Spans ingested per minute over the last hour, per project: a first look at traffic.
SELECT
    toStartOfMinute(IngestedAt) AS Minute,
    Project,
    count() AS Spans,
    uniqExact(TraceId) AS Traces
FROM otel_traces
WHERE IngestedAt >= now() - INTERVAL 1 HOUR
GROUP BY Minute, Project
ORDER BY Minute DESC, Project
