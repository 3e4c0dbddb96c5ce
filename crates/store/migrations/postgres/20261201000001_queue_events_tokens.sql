-- Queue leases, follow-ups, durable events and raw lines, API tokens and share links.
-- Never edit once released: add a new migration.

-- A run is claimed by one worker (claimed_by) for a lease (lease_until, unix ms)
-- that the worker keeps renewing; pending_message is a follow-up waiting to run.
ALTER TABLE runs ADD COLUMN claimed_by TEXT;
ALTER TABLE runs ADD COLUMN lease_until BIGINT;
ALTER TABLE runs ADD COLUMN pending_message TEXT;
CREATE INDEX runs_queue ON runs (state, created_at);
CREATE INDEX runs_claimed_by ON runs (claimed_by) WHERE claimed_by IS NOT NULL;
CREATE INDEX runs_repo ON runs (repo);

-- Normalized events (body: the Event as JSON); never stored twice.
CREATE TABLE run_events (
    run_id  TEXT NOT NULL REFERENCES runs (id),
    seq     BIGINT NOT NULL,
    ts      BIGINT NOT NULL,           -- unix milliseconds
    kind    TEXT NOT NULL,             -- EventKind::name()
    body    TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- The harness's own output lines, numbered from 1.
CREATE TABLE run_raw_lines (
    run_id   TEXT NOT NULL REFERENCES runs (id),
    line_no  BIGINT NOT NULL,
    line     TEXT NOT NULL,
    PRIMARY KEY (run_id, line_no)
);

-- API tokens: only a SHA-256 hex hash of the secret is stored.
CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

-- Share links: read-only access to one run, by the hash of the link's secret.
CREATE TABLE share_links (
    link_hash   TEXT PRIMARY KEY NOT NULL,
    run_id      TEXT NOT NULL REFERENCES runs (id),
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX share_links_run ON share_links (run_id);
