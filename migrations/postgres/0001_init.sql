-- Switchyard schema, PostgreSQL dialect. Kept column-for-column identical to
-- migrations/postgres so one set of queries serves both. Integers are 64-bit;
-- booleans are 0/1 integers; JSON values are TEXT; times are microseconds since
-- the Unix epoch (UTC). Ids and keys use the "C" collation so that they sort
-- byte-wise, as in SQLite, and paging is the same on both.

-- The one global revision counter. Every write transaction increments it first,
-- which serialises writers and makes revisions commit in order.
CREATE TABLE revision_counter (
    id    BIGINT  PRIMARY KEY CHECK (id = 1),
    value BIGINT  NOT NULL
);
INSERT INTO revision_counter (id, value) VALUES (1, 0);

CREATE TABLE tenants (
    id            TEXT COLLATE "C" PRIMARY KEY,
    display_name  TEXT NOT NULL DEFAULT '',
    disabled      BIGINT  NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    revision      BIGINT  NOT NULL,
    created_at_us BIGINT  NOT NULL,
    updated_at_us BIGINT  NOT NULL
);

-- A pattern belongs to at most one tenant: it is the primary key.
CREATE TABLE tenant_patterns (
    pattern   TEXT PRIMARY KEY,
    tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    position  BIGINT  NOT NULL
);
CREATE INDEX tenant_patterns_by_tenant ON tenant_patterns (tenant_id);

CREATE TABLE flags (
    key           TEXT COLLATE "C" PRIMARY KEY,
    value_type    TEXT NOT NULL,
    description   TEXT NOT NULL DEFAULT '',
    default_value TEXT NOT NULL,
    stored_value  TEXT,
    revision      BIGINT  NOT NULL,
    created_at_us BIGINT  NOT NULL,
    updated_at_us BIGINT  NOT NULL
);

CREATE TABLE tenant_overrides (
    tenant_id     TEXT COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    flag_key      TEXT COLLATE "C" NOT NULL REFERENCES flags (key) ON DELETE CASCADE,
    value         TEXT NOT NULL,
    revision      BIGINT  NOT NULL,
    updated_at_us BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, flag_key)
);
CREATE INDEX tenant_overrides_by_flag ON tenant_overrides (flag_key);

-- Every change, by revision. `tenant_id` confines a change to one tenant (NULL:
-- it concerns every tenant); `payload` is the new state as JSON (NULL on delete).
CREATE TABLE change_log (
    revision        BIGINT  PRIMARY KEY,
    entity          TEXT NOT NULL,
    op              TEXT NOT NULL,
    tenant_id       TEXT,
    flag_key        TEXT,
    payload         TEXT,
    committed_at_us BIGINT  NOT NULL
);

CREATE TABLE gate_runs (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    verdict       TEXT NOT NULL,
    run_id        TEXT NOT NULL DEFAULT '',
    report        TEXT NOT NULL,
    created_at_us BIGINT  NOT NULL
);
CREATE INDEX gate_runs_by_time ON gate_runs (created_at_us, id);
