-- Score configs (issue 10): what a score naming one (config_id) must be: data type, range, categories.
-- Versioned like connections: every change writes a new row with Version + 1, the latest row per Id (FINAL)
-- is the config; a deleted one keeps a row with Deleted = 1. Spec is the config as JSON (the API's shape).
CREATE TABLE IF NOT EXISTS score_configs
(
    Id String,
    Name String,
    Version UInt32,
    Deleted Bool,
    Spec String,
    UpdatedAt DateTime64(6)
)
ENGINE = ReplacingMergeTree(Version)
ORDER BY Id;
