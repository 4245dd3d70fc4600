-- Gate runs keep the target they judged (filterable) and the global revision
-- in force when they were judged, so a verdict can be tied to the flags and
-- tenants it was given under.
ALTER TABLE gate_runs ADD COLUMN target TEXT NOT NULL DEFAULT '';
ALTER TABLE gate_runs ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
CREATE INDEX gate_runs_by_kind_target ON gate_runs (kind, target, created_at_us, id);
