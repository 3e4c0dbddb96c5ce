-- Which run of a fan-out group was picked as its result. The row is the
-- claim: two picks of one group at once (two people, two nodes, a double
-- click) race for the primary key, so exactly one opens a pull request.
-- done is set once the pick is recorded in the run's summary; a claim left
-- unfinished (its process died) may be taken over after a while.
-- Never edit once released: add a new migration.
CREATE TABLE group_picks (
    group_id   TEXT PRIMARY KEY NOT NULL,
    run_id     TEXT NOT NULL,
    claimed_at INTEGER NOT NULL,
    done       BOOLEAN NOT NULL DEFAULT FALSE
);
