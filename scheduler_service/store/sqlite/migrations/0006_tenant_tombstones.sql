-- A deletion's watchers are matched by client too (tenancy: a client's WatchTasks must see
-- the deletions of its own tasks, and only those).
ALTER TABLE deleted_tasks ADD COLUMN client TEXT NOT NULL DEFAULT '';
