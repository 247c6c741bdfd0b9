-- Root-less parts of traces (issue 14 item 2): while several processes share ClickHouse, a process that closes a
-- trace without its root and finds no root stored scores what it has (the earliest span standing in) and records
-- the trace here. A process that closes a trace with its root looks its trace ids up here (by the sorting key,
-- one query per batch of closed traces) and scores the whole trace where another process recorded a part, so
-- the part's scores are replaced. Rows expire after a day.
CREATE TABLE IF NOT EXISTS trace_fragments
(
    TraceId String,
    Project LowCardinality(String),
    Process String,
    ClosedAt DateTime64(6) DEFAULT now64(6)
)
ENGINE = MergeTree
ORDER BY TraceId
TTL toDateTime(ClosedAt) + INTERVAL 1 DAY;
