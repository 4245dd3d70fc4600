-- The audit log: who changed what, when, why, and what it was before and
-- after. One row per change of a flag, an override or a tenant (written in
-- the change's own transaction, at its revision), per token made or
-- revoked, and per step of a rollout. Unlike change_log, which is pruned
-- once no watch needs to replay it, nothing here is ever deleted by the
-- server.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at_us       INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    revision    INTEGER,
    flag_key    TEXT,
    tenant_id   TEXT,
    before_json TEXT,
    after_json  TEXT,
    reason      TEXT NOT NULL DEFAULT '',
    verdict     TEXT
);
CREATE INDEX audit_log_flag ON audit_log (flag_key, id);
CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_at ON audit_log (at_us);
