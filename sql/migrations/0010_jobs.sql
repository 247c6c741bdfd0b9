-- Jobs (issue 11): re-scoring stored traces (rewind, backfill, score selected traces). One row per change of a
-- job, the latest (FINAL, by Version: the writer's clock in nanoseconds) is the job. Only the process holding
-- the job's lease writes its progress; Cursor is where a resumed job starts again (start ns:trace id).
CREATE TABLE IF NOT EXISTS jobs
(
    JobId String,
    Kind LowCardinality(String),
    RuleId String,
    RuleVersion UInt32,
    Project LowCardinality(String),
    Params String,
    State LowCardinality(String),
    Total UInt64,
    Processed UInt64,
    Matched UInt64,
    FilteredOut UInt64,
    SampledOut UInt64,
    Scored UInt64,
    Errors UInt64,
    Shed Map(LowCardinality(String), UInt64),
    JudgeCalls UInt64,
    CostUsd Float64,
    Cursor String,
    LastError String,
    Paused String,
    Process String,
    LeaseEpoch UInt32,
    HeartbeatAt DateTime64(6),
    CreatedAt DateTime64(6),
    StartedAt DateTime64(6),
    FinishedAt DateTime64(6),
    Version UInt64
)
ENGINE = ReplacingMergeTree(Version)
ORDER BY JobId;

-- Leases: a process that wants to run a job inserts a claim for the job's next epoch, waits a settle time, and
-- runs the job only if its claim is the earliest of that epoch (by the server's insert time, then process).
CREATE TABLE IF NOT EXISTS job_claims
(
    JobId String,
    Epoch UInt32,
    Process String,
    ClaimedAt DateTime64(6) DEFAULT now64(6)
)
ENGINE = MergeTree
ORDER BY (JobId, Epoch, ClaimedAt);

-- Cancel requests, from any process's API; the job's runner sees them within a second and stops.
CREATE TABLE IF NOT EXISTS job_cancels
(
    JobId String,
    RequestedAt DateTime64(6) DEFAULT now64(6)
)
ENGINE = MergeTree
ORDER BY JobId;
