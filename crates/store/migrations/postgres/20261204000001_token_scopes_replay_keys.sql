-- API token scopes, and the replay keys of signed Slack and GitHub requests.
-- Never edit once released: add a new migration.

-- What a token may do: a comma-separated set of `read`, `run`, `admin`.
-- Tokens created before scopes existed could read and start runs through the
-- API (it had no administrative routes), so they keep exactly that: read,run.
ALTER TABLE api_tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT 'read,run';

-- Signed requests already acted on (`slack:cmd:<trigger_id>`,
-- `github:body:<sha256>`…), so a captured request re-sent is refused on every
-- node and after a restart. Rows are kept until expires_at (unix ms), then
-- pruned through the index.
CREATE TABLE replay_keys (
    replay_key  TEXT PRIMARY KEY NOT NULL,
    seen_at     BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX replay_keys_expires ON replay_keys (expires_at);
