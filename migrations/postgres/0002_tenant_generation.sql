-- The revision of the last tenant change. It names the generation of the Redis
-- cache of resolutions, so replicas started at different times share entries.
CREATE TABLE tenant_generation (
    id    BIGINT PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO tenant_generation (id, value)
SELECT 1, COALESCE(MAX(revision), 0) FROM change_log WHERE entity = 'tenant';
