-- A rule's scores per scorer and hour of the traces' start, for its charts: mean value and pass rate.
-- Bounded: one rule (bloom index on RuleId), traces that started since since_ns (the shown and previous period).
-- Parameters: rule_id, since_ns.
SELECT Name,
       toUnixTimestamp(toStartOfHour(TraceStart)) AS hour,
       avgIf(assumeNotNull(Value), isNotNull(Value)) AS mean,
       avgIf(toFloat64(assumeNotNull(Passed)), isNotNull(Passed)) AS pass_rate,
       count() AS n
FROM scores FINAL
WHERE RuleId = {rule_id:String} AND TraceStart >= fromUnixTimestamp64Nano({since_ns:Int64}) AND Error = ''
GROUP BY Name, hour
ORDER BY Name, hour
LIMIT 100000
