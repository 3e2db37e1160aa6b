"""The SQLite store: the embedded default (WAL, group commit, versioned migrations)."""
