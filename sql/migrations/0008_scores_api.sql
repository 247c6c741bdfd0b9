-- Scores from the API (issue 10): the dataset run and score config a score names, and a skip index on
-- ScoreId, which a write looks up before it replaces a score of the same id (connectors/clickhouse/scores_store.py).
-- Rows written before this migration read ''.
ALTER TABLE scores
    ADD COLUMN IF NOT EXISTS DatasetRunId String DEFAULT '',
    ADD COLUMN IF NOT EXISTS ConfigId String DEFAULT '',
    ADD INDEX IF NOT EXISTS idx_score_id ScoreId TYPE bloom_filter(0.001) GRANULARITY 1;
