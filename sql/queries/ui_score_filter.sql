-- Traces whose scores meet the UI's score condition (at most 100,000, newest first). Parameters: name (the
-- score's name), op (one of = != < <= > >=, or 'passed' / 'failed'), value (Float64), since_ns, project.
SELECT DISTINCT TraceId
FROM scores FINAL
WHERE Name = {name:String}
  AND ({project:String} = '' OR Project = {project:String})
  AND Timestamp >= fromUnixTimestamp64Nano({since_ns:Int64})
  AND multiIf(
        {op:String} = 'passed', Passed = true,
        {op:String} = 'failed', Passed = false,
        {op:String} = '=', Value = {value:Float64},
        {op:String} = '!=', Value != {value:Float64},
        {op:String} = '<', Value < {value:Float64},
        {op:String} = '<=', Value <= {value:Float64},
        {op:String} = '>', Value > {value:Float64},
        {op:String} = '>=', Value >= {value:Float64},
        false)
LIMIT 100000
