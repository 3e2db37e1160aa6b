-- Initial schema. Times are integers of microseconds since the Unix epoch (UTC).
-- Stored states: 2 = queued (SCHEDULED or PENDING by due_at), 3 = RUNNING,
-- 4 = SUCCEEDED, 5 = FAILED, 6 = CANCELLED (numbers of orchestrator.v1.TaskState).

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

-- Grows by one in every transaction that changes tasks; each changed row takes it.
INSERT INTO meta (key, value) VALUES ('revision', 0);

CREATE TABLE tasks (
    id                 TEXT NOT NULL UNIQUE,
    type               TEXT NOT NULL,
    payload            TEXT NOT NULL,
    state              INTEGER NOT NULL,
    priority           INTEGER NOT NULL,
    run_at             INTEGER NOT NULL,
    -- When the task is due for its next attempt (run_at, or the end of a backoff).
    due_at             INTEGER NOT NULL,
    -- due_at minus priority times the aging rate: the claim order. Lower claims first,
    -- so waiting raises a task's effective priority and nothing starves.
    claim_key          INTEGER NOT NULL,
    max_attempts       INTEGER NOT NULL,
    backoff_initial    INTEGER NOT NULL,
    backoff_multiplier REAL NOT NULL,
    backoff_maximum    INTEGER NOT NULL,
    backoff_jitter     REAL NOT NULL,
    timeout            INTEGER NOT NULL,
    grp                TEXT NOT NULL DEFAULT '',
    idempotency_key    TEXT NOT NULL DEFAULT '',
    cache              INTEGER NOT NULL DEFAULT 0,
    client             TEXT NOT NULL DEFAULT '',
    labels             TEXT NOT NULL DEFAULT '{}',
    result             TEXT,
    error              TEXT NOT NULL DEFAULT '',
    -- Attempts counted since creation or the last RetryTask.
    attempts           INTEGER NOT NULL DEFAULT 0,
    -- Attempts ever started (numbers the attempt history; never reset).
    attempt_seq        INTEGER NOT NULL DEFAULT 0,
    -- The current lease (fencing id), its worker and stream session, while RUNNING.
    lease_id           TEXT NOT NULL DEFAULT '',
    worker_id          TEXT NOT NULL DEFAULT '',
    session_id         TEXT NOT NULL DEFAULT '',
    lease_expires_at   INTEGER,
    attempt_deadline   INTEGER,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    started_at         INTEGER,
    finished_at        INTEGER,
    revision           INTEGER NOT NULL
);

-- Claiming: the best queued tasks of one type (partial: only queued rows).
CREATE INDEX tasks_claim ON tasks (type, claim_key) WHERE state = 2;
-- The timer for the next task to become due.
CREATE INDEX tasks_due ON tasks (due_at) WHERE state = 2;
-- Running tasks by lease and by stream session (heartbeats, results, lost workers).
CREATE INDEX tasks_running_lease ON tasks (lease_id) WHERE state = 3;
CREATE INDEX tasks_running_session ON tasks (session_id) WHERE state = 3;
-- List filters, newest first by id.
CREATE INDEX tasks_state ON tasks (state, id);
CREATE INDEX tasks_type ON tasks (type, id);
CREATE INDEX tasks_client ON tasks (client, id);
CREATE INDEX tasks_group ON tasks (grp, id) WHERE grp != '';
-- Change feed for watchers.
CREATE INDEX tasks_revision ON tasks (revision, id);
-- A repeated create with the same key returns the first task.
CREATE UNIQUE INDEX tasks_idempotency ON tasks (client, idempotency_key)
    WHERE idempotency_key != '';
-- Throughput and retention.
CREATE INDEX tasks_finished ON tasks (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE task_labels (
    task_id TEXT NOT NULL,
    key     TEXT NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (key, value, task_id)
) WITHOUT ROWID;
CREATE INDEX task_labels_task ON task_labels (task_id);

CREATE TABLE attempts (
    task_id     TEXT NOT NULL,
    number      INTEGER NOT NULL,
    lease_id    TEXT NOT NULL,
    worker_id   TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    outcome     INTEGER NOT NULL DEFAULT 0,
    error       TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (task_id, number)
) WITHOUT ROWID;

-- Deleted tasks, so that watchers learn of deletions in revision order.
CREATE TABLE deleted_tasks (
    revision   INTEGER NOT NULL,
    task_id    TEXT NOT NULL,
    type       TEXT NOT NULL,
    deleted_at INTEGER NOT NULL,
    PRIMARY KEY (revision, task_id)
) WITHOUT ROWID;

CREATE TABLE task_types (
    name          TEXT PRIMARY KEY,
    paused        INTEGER NOT NULL DEFAULT 0,
    first_seen_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Worker streams connected to any scheduler process sharing this database.
CREATE TABLE workers (
    session_id        TEXT PRIMARY KEY,
    worker_id         TEXT NOT NULL,
    scheduler_id      TEXT NOT NULL,
    hostname          TEXT NOT NULL,
    pid               INTEGER NOT NULL,
    version           TEXT NOT NULL,
    task_types        TEXT NOT NULL,
    slots             INTEGER NOT NULL,
    connected_at      INTEGER NOT NULL,
    last_heartbeat_at INTEGER NOT NULL,
    draining          INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
