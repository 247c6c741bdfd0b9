-- Live processes (issue 14): every process inserts a heartbeat every judging.heartbeat_interval_s; those whose
-- latest heartbeat (FINAL, by the server's clock) is younger than three intervals are live, and each per-rule
-- judge budget is split evenly among them. Old rows expire after a day.
CREATE TABLE IF NOT EXISTS process_heartbeats
(
    Process String,
    HeartbeatAt DateTime64(6) DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree(HeartbeatAt)
ORDER BY Process
TTL toDateTime(HeartbeatAt) + INTERVAL 1 DAY;
