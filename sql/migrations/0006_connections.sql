-- LLM connections, versioned like rules: the latest row per Id (FINAL) is the connection. Keys are never
-- stored: Spec names the environment variable that holds the key (api_key_env).
CREATE TABLE IF NOT EXISTS connections
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
