"""Re-scoring jobs: rewind, backfill and score selected traces through the live scoring path (issue 11)."""
