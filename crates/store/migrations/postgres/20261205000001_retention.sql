-- Retention: when a run's workspace and its logs were removed (unix ms), so
-- `errand ls`/`show` and the API can say they are gone.
-- Never edit once released: add a new migration.
ALTER TABLE runs ADD COLUMN workspace_pruned_at BIGINT;
ALTER TABLE runs ADD COLUMN logs_pruned_at BIGINT;
