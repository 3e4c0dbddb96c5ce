-- Runs and their recorded state changes. Never edit once released: add a new migration.
-- Timestamps are unix milliseconds (BIGINT), as in the SQLite backend.
CREATE TABLE runs (
    id               TEXT PRIMARY KEY NOT NULL,
    spec             TEXT NOT NULL,            -- RunSpec as JSON
    repo             TEXT,                     -- copied out of spec for filtering
    harness          TEXT NOT NULL,
    model            TEXT,
    state            TEXT NOT NULL,
    reason           TEXT,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    summary          TEXT NOT NULL DEFAULT '{}', -- RunSummary as JSON
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    owner_pid        BIGINT
);
CREATE INDEX runs_created_at ON runs (created_at DESC);
CREATE INDEX runs_state ON runs (state);

CREATE TABLE run_transitions (
    run_id  TEXT NOT NULL REFERENCES runs (id),
    seq     BIGINT NOT NULL,
    state   TEXT NOT NULL,
    at      BIGINT NOT NULL,
    reason  TEXT,
    PRIMARY KEY (run_id, seq)
);
