-- Scoring rules, versioned: every change writes a new row with Version + 1; the latest row per Id (FINAL)
-- is the rule. Deleted rules keep a row with Deleted = 1. Spec is the rule as JSON (the API's shape).
CREATE TABLE IF NOT EXISTS rules
(
    Id String,
    Project LowCardinality(String),
    Name String,
    Version UInt32,
    Enabled Bool,
    Deleted Bool,
    Spec String,
    UpdatedAt DateTime64(6)
)
ENGINE = ReplacingMergeTree(Version)
ORDER BY Id;
