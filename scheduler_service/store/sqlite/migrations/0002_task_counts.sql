-- Task counts per type and stored state, so that GetStats and ListTaskTypes read a small
-- table instead of scanning every task. Each row also sums the retries (attempts beyond
-- the first) of its tasks and counts FAILED tasks that used all their attempts (the
-- dead-letter set). The store adds each transaction's changes in one statement before it
-- commits (counts.py); triggers would cost a statement per task row on the hot path.

CREATE TABLE task_counts (
    type      TEXT NOT NULL,
    state     INTEGER NOT NULL,
    tasks     INTEGER NOT NULL DEFAULT 0,
    retries   INTEGER NOT NULL DEFAULT 0,
    exhausted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (type, state)
) WITHOUT ROWID;

INSERT INTO task_counts (type, state, tasks, retries, exhausted)
SELECT type, state, count(*), sum(max(attempts - 1, 0)),
       sum(state = 5 AND attempts >= max_attempts)
FROM tasks GROUP BY type, state;

-- The most retried tasks, for GetStats, without a scan.
CREATE INDEX tasks_retried ON tasks (attempts) WHERE attempts > 1;

-- Covering for "queued tasks not due yet, per type" (the SCHEDULED counts).
DROP INDEX tasks_due;
CREATE INDEX tasks_due ON tasks (due_at, type) WHERE state = 2;

-- "Failed tasks of type X": the operator's most common list.
CREATE INDEX tasks_type_state ON tasks (type, state, id);
