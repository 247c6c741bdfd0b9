-- The distribution of a rule's score values per scorer over the shown period: ClickHouse's adaptive
-- histogram (up to 12 bins of lower, upper, height). Parameters: rule_id, since_ns.
SELECT Name, histogram(12)(assumeNotNull(Value)) AS bins
FROM scores FINAL
WHERE RuleId = {rule_id:String} AND TraceStart >= fromUnixTimestamp64Nano({since_ns:Int64})
  AND Error = '' AND isNotNull(Value)
GROUP BY Name
ORDER BY Name
LIMIT 100
