-- A rule's latest score row with an error (scorer or judge), for its processing status. Parameter: rule_id.
SELECT Error, toUnixTimestamp64Micro(Timestamp)
FROM scores
WHERE RuleId = {rule_id:String} AND Error != ''
ORDER BY Timestamp DESC
LIMIT 1
