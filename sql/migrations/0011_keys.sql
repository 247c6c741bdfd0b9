-- API keys (issue 13): one row per change of a key, the latest (FINAL, by Version) is the key. Only a hash of
-- the key's secret is stored (sha256, hex: keys are 256-bit random, so a slow KDF would buy nothing); the key
-- itself is shown once, when it is created. A revoked key keeps its row with RevokedAt set.
CREATE TABLE IF NOT EXISTS keys
(
    KeyId String,
    Name String,
    Hash String,
    Scopes Array(LowCardinality(String)),
    Projects Array(String),
    CreatedAt DateTime64(6),
    RevokedAt Nullable(DateTime64(6)),
    Version UInt64
)
ENGINE = ReplacingMergeTree(Version)
ORDER BY KeyId;
