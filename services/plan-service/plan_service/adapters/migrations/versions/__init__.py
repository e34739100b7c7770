"""plan-service's revisions: branch `events` (the event store's database) and branch
`access_log` (the access log's: its own SQLite file, or the same PostgreSQL schema)."""
