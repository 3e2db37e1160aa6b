-- Lease expiry and attempt deadlines move to the monotonic clock (microseconds since the
-- host booted), so a wall-clock jump moves no deadline. The boot they belong to is kept
-- here; at start-up a scheduler that finds another boot id expires every lease of the old
-- boot (see boot.py). Leases written before this migration count as another boot.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
