-- Judge outcomes in the rule status: error rows of judges (part of ScorerErrors) and judge tasks shed (no call
-- made), by reason. Rows written before this migration read 0.
ALTER TABLE rule_status
    ADD COLUMN IF NOT EXISTS JudgeErrors UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS ShedBudget UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS ShedOverload UInt64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS ShedCircuitOpen UInt64 DEFAULT 0;
