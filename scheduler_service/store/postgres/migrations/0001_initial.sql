-- PostgreSQL schema of the task store: the equivalent of the final SQLite schema
-- (scheduler_service/store/sqlite/migrations/0001 ... 0007), in one step for a new database.
-- Migrations here are applied in file-name order by the PostgreSQL store, under a
-- PostgreSQL advisory lock, so that scheduler replicas starting together migrate once.
--
-- Same tables, columns and index names as SQLite, so that the SQLite store's SQL ports
-- with little change:
-- - Times are BIGINT microseconds since the Unix epoch (UTC); counters and revisions are
--   BIGINT. SQLite REAL is DOUBLE PRECISION.
-- - Flags SQLite keeps as INTEGER 0/1 are SMALLINT 0/1 (CHECKed), so `cache = 1` ports
--   as is. Bind them as Python ints: a Python bool is sent as a PostgreSQL boolean.
-- - JSON stays TEXT: the store writes canonical JSON strings and compares them as text.
-- - Text that is a key, sorted or compared by range (ids, names, cursors) is COLLATE "C":
--   byte order, as SQLite's BINARY collation, whatever the database's locale, so pages,
--   cursors and ORDER BY answer in the same order as with SQLite.
-- - SQLite's WITHOUT ROWID tables are plain tables with the same primary key.
--
-- Stored states (numbers of orchestrator.v1.TaskState, plus the store's own):
-- 2 = queued (SCHEDULED or PENDING by due_at), 3 = RUNNING, 4 = SUCCEEDED, 5 = FAILED,
-- 6 = CANCELLED, 7 = waiting for its group (reads as SCHEDULED or PENDING),
-- 8 = following a cached task (reads as PENDING).

CREATE TABLE meta (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value BIGINT NOT NULL
);

-- Grows by one in every transaction that changes tasks; each changed row takes it.
-- 'history_floor' (the newest deletion record ever pruned) is added by retention.
INSERT INTO meta (key, value) VALUES ('revision', 0);

CREATE TABLE tasks (
    -- Insertion order, in place of SQLite's implicit rowid: "the earliest waiting task of a
    -- group", "the earliest follower", "the oldest unfinished cached task" are the lowest
    -- seq. Identity values are taken at insert, not at commit: where SQLite's single writer
    -- made rowid order commit order, here that holds only while writes are serialised.
    seq                BIGINT GENERATED ALWAYS AS IDENTITY,
    id                 TEXT COLLATE "C" PRIMARY KEY,
    type               TEXT COLLATE "C" NOT NULL,
    payload            TEXT NOT NULL,
    state              INTEGER NOT NULL,
    priority           INTEGER NOT NULL,
    run_at             BIGINT NOT NULL,
    -- When the task is due for its next attempt (run_at, or the end of a backoff).
    due_at             BIGINT NOT NULL,
    -- due_at minus priority times the aging rate: the claim order. Lower claims first,
    -- so waiting raises a task's effective priority and nothing starves.
    claim_key          BIGINT NOT NULL,
    max_attempts       INTEGER NOT NULL,
    backoff_initial    BIGINT NOT NULL,
    backoff_multiplier DOUBLE PRECISION NOT NULL,
    backoff_maximum    BIGINT NOT NULL,
    backoff_jitter     DOUBLE PRECISION NOT NULL,
    timeout            BIGINT NOT NULL,
    grp                TEXT COLLATE "C" NOT NULL DEFAULT '',
    idempotency_key    TEXT COLLATE "C" NOT NULL DEFAULT '',
    cache              SMALLINT NOT NULL DEFAULT 0 CHECK (cache IN (0, 1)),
    client             TEXT COLLATE "C" NOT NULL DEFAULT '',
    -- JSON object of the labels (also in task_labels, for filtering).
    labels             TEXT NOT NULL DEFAULT '{}',
    result             TEXT,
    error              TEXT NOT NULL DEFAULT '',
    -- Attempts counted since creation or the last RetryTask.
    attempts           BIGINT NOT NULL DEFAULT 0,
    -- Attempts ever started (numbers the attempt history; never reset).
    attempt_seq        BIGINT NOT NULL DEFAULT 0,
    -- The current lease (fencing id), its worker and stream session, while RUNNING.
    lease_id           TEXT COLLATE "C" NOT NULL DEFAULT '',
    worker_id          TEXT COLLATE "C" NOT NULL DEFAULT '',
    session_id         TEXT COLLATE "C" NOT NULL DEFAULT '',
    -- Lease expiry and attempt deadline, while RUNNING. Unlike SQLite (where 0005 moved them
    -- to the host's monotonic clock, with a boot id in settings), these are wall-clock
    -- microseconds of the DATABASE SERVER's clock: scheduler replicas on several hosts share
    -- no monotonic clock, so the store computes them in SQL from the server's now(), and
    -- compares them with it, never with a scheduler host's clock.
    lease_expires_at   BIGINT,
    attempt_deadline   BIGINT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    started_at         BIGINT,
    finished_at        BIGINT,
    revision           BIGINT NOT NULL,
    -- 1 = block (the default), 2 = skip: numbers of orchestrator.v1.OnFailure.
    on_failure         INTEGER NOT NULL DEFAULT 1,
    concurrency_key    TEXT COLLATE "C" NOT NULL DEFAULT '',
    -- Result cache: the hash of (client, type, payload) when cache = 1; whether the result
    -- was copied or joined (not run); the task it was copied from or follows.
    cache_key          TEXT COLLATE "C" NOT NULL DEFAULT '',
    cached             SMALLINT NOT NULL DEFAULT 0 CHECK (cached IN (0, 1)),
    cached_from        TEXT COLLATE "C" NOT NULL DEFAULT '',
    progress_percent   DOUBLE PRECISION,
    progress_message   TEXT NOT NULL DEFAULT '',
    progress_details   TEXT,
    progress_at        BIGINT,
    -- The W3C trace context of the create (JSON of traceparent, tracestate), or ''.
    trace_context      TEXT NOT NULL DEFAULT ''
);

-- SQLite appends the rowid to every index, and the store relies on it where it orders by
-- rowid; those indexes here end with seq explicitly (tasks_group_waiting, tasks_cache_live,
-- tasks_followers). Otherwise the indexes are SQLite's, with the same partial predicates.

-- Claiming: the best queued tasks of one type (partial: only queued rows).
CREATE INDEX tasks_claim ON tasks (type, claim_key) WHERE state = 2;
-- Queued and group-waiting tasks not due yet (the SCHEDULED counts) and the due timer.
CREATE INDEX tasks_due ON tasks (due_at, type, state) WHERE state IN (2, 7);
-- Running tasks by lease and by stream session (heartbeats, results, lost workers).
CREATE INDEX tasks_running_lease ON tasks (lease_id) WHERE state = 3;
CREATE INDEX tasks_running_session ON tasks (session_id) WHERE state = 3;
-- List filters, newest first by id.
CREATE INDEX tasks_state ON tasks (state, id);
CREATE INDEX tasks_type ON tasks (type, id);
CREATE INDEX tasks_client ON tasks (client, id);
CREATE INDEX tasks_group ON tasks (grp, id) WHERE grp != '';
-- "Failed tasks of type X": the operator's most common list.
CREATE INDEX tasks_type_state ON tasks (type, state, id);
-- Change feed for watchers.
CREATE INDEX tasks_revision ON tasks (revision, id);
-- A repeated create with the same key returns the first task.
CREATE UNIQUE INDEX tasks_idempotency ON tasks (client, idempotency_key)
    WHERE idempotency_key != '';
-- Idempotency keys past their retention are released by age.
CREATE INDEX tasks_idempotency_age ON tasks (created_at) WHERE idempotency_key != '';
-- Throughput and retention.
CREATE INDEX tasks_finished ON tasks (finished_at) WHERE finished_at IS NOT NULL;
-- The most retried tasks, for GetStats, without a scan.
CREATE INDEX tasks_retried ON tasks (attempts) WHERE attempts > 1;
-- The group's active task (at most one per group), and its waiting tasks in order.
CREATE INDEX tasks_group_active ON tasks (grp)
    WHERE grp != '' AND (state IN (2, 3) OR (state = 5 AND on_failure = 1));
CREATE INDEX tasks_group_waiting ON tasks (grp, seq) WHERE state = 7;
-- Running tasks per concurrency key.
CREATE INDEX tasks_running_key ON tasks (concurrency_key)
    WHERE state = 3 AND concurrency_key != '';
-- Succeeded tasks that ran themselves: the results a cached create may reuse.
CREATE INDEX tasks_cache_done ON tasks (cache_key, finished_at)
    WHERE cache = 1 AND state = 4 AND cached = 0;
-- Unfinished cached tasks that identical creates join, oldest first.
CREATE INDEX tasks_cache_live ON tasks (cache_key, seq) WHERE cache = 1 AND state IN (2, 3, 7);
-- The followers of a task, earliest first.
CREATE INDEX tasks_followers ON tasks (cached_from, seq) WHERE state = 8;

CREATE TABLE task_labels (
    task_id TEXT COLLATE "C" NOT NULL,
    key     TEXT COLLATE "C" NOT NULL,
    value   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (key, value, task_id)
);
CREATE INDEX task_labels_task ON task_labels (task_id);

CREATE TABLE attempts (
    task_id     TEXT COLLATE "C" NOT NULL,
    number      BIGINT NOT NULL,
    lease_id    TEXT COLLATE "C" NOT NULL,
    worker_id   TEXT COLLATE "C" NOT NULL,
    -- The handler start reported by the worker (the lease time until it reports).
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    outcome     INTEGER NOT NULL DEFAULT 0,
    error       TEXT NOT NULL DEFAULT '',
    -- When the attempt was due and when it was leased.
    due_at      BIGINT,
    leased_at   BIGINT,
    PRIMARY KEY (task_id, number)
);
CREATE INDEX attempts_leased ON attempts (leased_at);

-- Deleted tasks, so that watchers learn of deletions in revision order (and by client:
-- a client's WatchTasks sees the deletions of its own tasks only).
CREATE TABLE deleted_tasks (
    revision   BIGINT NOT NULL,
    task_id    TEXT COLLATE "C" NOT NULL,
    type       TEXT COLLATE "C" NOT NULL,
    deleted_at BIGINT NOT NULL,
    client     TEXT COLLATE "C" NOT NULL DEFAULT '',
    PRIMARY KEY (revision, task_id)
);

-- Task types seen, paused flag, and limits per type (0 means none).
CREATE TABLE task_types (
    name           TEXT COLLATE "C" PRIMARY KEY,
    paused         SMALLINT NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    first_seen_at  BIGINT NOT NULL,
    max_running    BIGINT NOT NULL DEFAULT 0,
    max_per_second DOUBLE PRECISION NOT NULL DEFAULT 0
);

-- Worker streams connected to any scheduler process sharing this database.
CREATE TABLE workers (
    session_id        TEXT COLLATE "C" PRIMARY KEY,
    worker_id         TEXT COLLATE "C" NOT NULL,
    scheduler_id      TEXT COLLATE "C" NOT NULL,
    hostname          TEXT NOT NULL,
    pid               BIGINT NOT NULL,
    version           TEXT NOT NULL,
    -- JSON array of the task types the worker serves.
    task_types        TEXT NOT NULL,
    slots             BIGINT NOT NULL,
    connected_at      BIGINT NOT NULL,
    last_heartbeat_at BIGINT NOT NULL,
    draining          SMALLINT NOT NULL DEFAULT 0 CHECK (draining IN (0, 1))
);

-- Task counts per type and stored state, so that GetStats and ListTaskTypes read a small
-- table instead of scanning every task. Each row also sums the retries (attempts beyond
-- the first) of its tasks and counts FAILED tasks that used all their attempts (the
-- dead-letter set). The store adds each transaction's changes in one statement before it
-- commits. (sum() of these BIGINT columns is NUMERIC in PostgreSQL: cast it back.)
CREATE TABLE task_counts (
    type      TEXT COLLATE "C" NOT NULL,
    state     INTEGER NOT NULL,
    tasks     BIGINT NOT NULL DEFAULT 0,
    retries   BIGINT NOT NULL DEFAULT 0,
    exhausted BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (type, state)
);

-- Limits per concurrency key, as last given on a create; 0 means none.
CREATE TABLE concurrency_keys (
    key            TEXT COLLATE "C" PRIMARY KEY,
    max_running    BIGINT NOT NULL DEFAULT 0,
    max_per_second DOUBLE PRECISION NOT NULL DEFAULT 0,
    updated_at     BIGINT NOT NULL
);

-- Recent starts of rate-limited scopes ('type:<name>' or 'key:<key>'), for a sliding
-- window; old rows are pruned. SQLite keeps no key (only its rowid): id is that rowid.
CREATE TABLE rate_starts (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope      TEXT COLLATE "C" NOT NULL,
    started_at BIGINT NOT NULL
);
CREATE INDEX rate_starts_scope ON rate_starts (scope, started_at);
CREATE INDEX rate_starts_time ON rate_starts (started_at);

-- Recurring schedules.
CREATE TABLE schedules (
    id            TEXT COLLATE "C" PRIMARY KEY,
    cron          TEXT NOT NULL,
    time_zone     TEXT NOT NULL,
    -- The task template, as the JSON of the validated task fields (no run_at).
    template      TEXT NOT NULL,
    client        TEXT COLLATE "C" NOT NULL DEFAULT '',
    paused        SMALLINT NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    -- 1 = latest, 2 = skip, 3 = all (numbers of orchestrator.v1.CatchUp).
    catch_up      INTEGER NOT NULL DEFAULT 1,
    -- The next slot: its instant (UTC micros) and its wall-clock time in the time zone.
    next_fire_at  BIGINT NOT NULL,
    next_slot     TEXT NOT NULL,
    -- The wall-clock time of the last slot fired (a DST repeat of it does not fire again).
    last_slot     TEXT NOT NULL DEFAULT '',
    last_fire_at  BIGINT,
    last_task_id  TEXT COLLATE "C" NOT NULL DEFAULT '',
    fired_count   BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE paused = 0;

-- Store settings, key -> text. SQLite keeps the host's boot id here for its monotonic
-- lease clock; PostgreSQL leases use the server clock and need none, but other settings
-- may live here.
CREATE TABLE settings (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value TEXT NOT NULL
);
