-- Runs and their recorded state changes. Never edit once released: add a new migration.
CREATE TABLE runs (
    id               TEXT PRIMARY KEY NOT NULL,
    spec             TEXT NOT NULL,            -- RunSpec as JSON
    repo             TEXT,                     -- copied out of spec for filtering
    harness          TEXT NOT NULL,
    model            TEXT,
    state            TEXT NOT NULL,
    reason           TEXT,
    created_at       INTEGER NOT NULL,         -- unix milliseconds
    started_at       INTEGER,
    finished_at      INTEGER,
    summary          TEXT NOT NULL DEFAULT '{}', -- RunSummary as JSON
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    owner_pid        INTEGER
);
CREATE INDEX runs_created_at ON runs (created_at DESC);
CREATE INDEX runs_state ON runs (state);

CREATE TABLE run_transitions (
    run_id  TEXT NOT NULL REFERENCES runs (id),
    seq     INTEGER NOT NULL,
    state   TEXT NOT NULL,
    at      INTEGER NOT NULL,
    reason  TEXT,
    PRIMARY KEY (run_id, seq)
);
