-- Every stored row (not FINAL: the rows not merged yet too) of the given score ids, with what decides whether
-- a new row of the same id replaces it: the partition (by TraceStart), the sort key and the version.
SELECT
    ScoreId,
    Project,
    Name,
    toUnixTimestamp64Nano(TraceStart) AS TraceStartNs,
    toUnixTimestamp64Micro(Timestamp) AS TimestampUs
FROM scores
WHERE ScoreId IN {score_ids:Array(String)}
