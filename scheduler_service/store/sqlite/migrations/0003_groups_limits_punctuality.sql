-- Sequential groups, concurrency and rate limits, punctuality.
--
-- A new stored state, 7 = waiting for its group: a grouped task whose group already has an
-- active task (queued, running, or FAILED with on_failure = block). It is shown as
-- SCHEDULED or PENDING like a queued task, but it is not in the claim index; when the
-- group's active task leaves (succeeds, is skipped, cancelled or deleted) the earliest
-- waiting task (lowest rowid: insertion order, which is commit order) becomes queued.

-- 1 = block (the default), 2 = skip: numbers of orchestrator.v1.OnFailure.
ALTER TABLE tasks ADD COLUMN on_failure INTEGER NOT NULL DEFAULT 1;
ALTER TABLE tasks ADD COLUMN concurrency_key TEXT NOT NULL DEFAULT '';

-- Each attempt records when it was due, leased and started (started_at was the lease
-- time so far; it becomes the handler start reported by the worker).
ALTER TABLE attempts ADD COLUMN due_at INTEGER;
ALTER TABLE attempts ADD COLUMN leased_at INTEGER;
UPDATE attempts SET leased_at = started_at, due_at = started_at;
CREATE INDEX attempts_leased ON attempts (leased_at);

-- The group's active task (at most one per group), and its waiting tasks in order.
CREATE INDEX tasks_group_active ON tasks (grp)
    WHERE grp != '' AND (state IN (2, 3) OR (state = 5 AND on_failure = 1));
CREATE INDEX tasks_group_waiting ON tasks (grp) WHERE state = 7;

-- Running tasks per concurrency key.
CREATE INDEX tasks_running_key ON tasks (concurrency_key)
    WHERE state = 3 AND concurrency_key != '';

-- Queued and group-waiting tasks not due yet (the SCHEDULED counts) and the due timer.
DROP INDEX tasks_due;
CREATE INDEX tasks_due ON tasks (due_at, type, state) WHERE state IN (2, 7);

-- Limits per task type; 0 means none.
ALTER TABLE task_types ADD COLUMN max_running INTEGER NOT NULL DEFAULT 0;
ALTER TABLE task_types ADD COLUMN max_per_second REAL NOT NULL DEFAULT 0;

-- Limits per concurrency key, as last given on a create.
CREATE TABLE concurrency_keys (
    key            TEXT PRIMARY KEY,
    max_running    INTEGER NOT NULL DEFAULT 0,
    max_per_second REAL NOT NULL DEFAULT 0,
    updated_at     INTEGER NOT NULL
) WITHOUT ROWID;

-- Recent starts of rate-limited scopes ('type:<name>' or 'key:<key>'), for a sliding
-- window; rows older than a minute are pruned.
CREATE TABLE rate_starts (
    scope      TEXT NOT NULL,
    started_at INTEGER NOT NULL
);
CREATE INDEX rate_starts_scope ON rate_starts (scope, started_at);
CREATE INDEX rate_starts_time ON rate_starts (started_at);
