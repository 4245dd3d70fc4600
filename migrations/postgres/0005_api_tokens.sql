-- Named tokens, made by TokenService (or `switchyard token create --direct`):
-- only the SHA-256 digest of each secret is kept. Every replica sharing the
-- database authenticates with them; a revoked token's row is deleted.
CREATE TABLE api_tokens (
    name          TEXT PRIMARY KEY,
    digest        TEXT NOT NULL UNIQUE,
    scope         TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    expires_at_us BIGINT
);
