-- Result cache with single flight, progress, idempotency retention, recurring schedules.
--
-- A new stored state, 8 = following: a task created with cache = 1 while an identical task
-- (same cache_key) was still unfinished. It does not run; when that task (named in
-- cached_from) finishes, the follower finishes the same way. It reads as PENDING.

ALTER TABLE tasks ADD COLUMN cache_key TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN cached INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN cached_from TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN progress_percent REAL;
ALTER TABLE tasks ADD COLUMN progress_message TEXT NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN progress_details TEXT;
ALTER TABLE tasks ADD COLUMN progress_at INTEGER;

-- Succeeded tasks that ran themselves: the results a cached create may reuse.
CREATE INDEX tasks_cache_done ON tasks (cache_key, finished_at)
    WHERE cache = 1 AND state = 4 AND cached = 0;
-- Unfinished cached tasks that identical creates join.
CREATE INDEX tasks_cache_live ON tasks (cache_key) WHERE cache = 1 AND state IN (2, 3, 7);
-- The followers of a task.
CREATE INDEX tasks_followers ON tasks (cached_from) WHERE state = 8;
-- Idempotency keys past their retention are released by age.
CREATE INDEX tasks_idempotency_age ON tasks (created_at) WHERE idempotency_key != '';

CREATE TABLE schedules (
    id            TEXT PRIMARY KEY,
    cron          TEXT NOT NULL,
    time_zone     TEXT NOT NULL,
    -- The task template, as the JSON of the validated task fields (no run_at).
    template      TEXT NOT NULL,
    client        TEXT NOT NULL DEFAULT '',
    paused        INTEGER NOT NULL DEFAULT 0,
    -- 1 = latest, 2 = skip, 3 = all (numbers of orchestrator.v1.CatchUp).
    catch_up      INTEGER NOT NULL DEFAULT 1,
    -- The next slot: its instant (UTC micros) and its wall-clock time in the time zone.
    next_fire_at  INTEGER NOT NULL,
    next_slot     TEXT NOT NULL,
    -- The wall-clock time of the last slot fired (a DST repeat of it does not fire again).
    last_slot     TEXT NOT NULL DEFAULT '',
    last_fire_at  INTEGER,
    last_task_id  TEXT NOT NULL DEFAULT '',
    fired_count   INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE paused = 0;
