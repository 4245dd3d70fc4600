-- Guarded rollouts: one row per rollout, its plan (spec, JSON) and where it
-- is. Every write is a compare-and-set on version. The replica driving a
-- running rollout holds its lease (lease_owner until lease_until_us); another
-- replica takes it over once it has expired. At most one rollout of a flag
-- is running or paused at a time.
CREATE TABLE rollouts (
    id               TEXT PRIMARY KEY,
    flag_key         TEXT NOT NULL,
    spec             TEXT NOT NULL,
    state            TEXT NOT NULL,
    stage            BIGINT NOT NULL,
    weight           BIGINT NOT NULL,
    stage_started_us BIGINT NOT NULL,
    holds            BIGINT NOT NULL,
    flag_revision    BIGINT NOT NULL,
    last_verdict     TEXT,
    baseline         TEXT,
    reason           TEXT NOT NULL DEFAULT '',
    version          BIGINT NOT NULL,
    lease_owner      TEXT,
    lease_until_us   BIGINT,
    created_by       TEXT NOT NULL,
    created_at_us    BIGINT NOT NULL,
    updated_at_us    BIGINT NOT NULL
);
CREATE UNIQUE INDEX rollouts_one_active_per_flag ON rollouts (flag_key)
    WHERE state IN ('running', 'paused');
CREATE INDEX rollouts_by_state ON rollouts (state);
