"""The access log: who read or changed which plan, when, in what role, with what result.

Append-only (no update or delete path exists). Reads must not wait on a disk flush, so entries
are queued and a writer thread commits them in batches (every 50 ms or 500 entries); reading
the log flushes first, so a patient always sees the accesses up to their own request. The
cost: a crash can lose the last batch of read entries (at most ~50 ms).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import astuple, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from careplan_shared.files import private_sqlite

COLUMNS = ("at", "plan_id", "subject", "role", "on_behalf_of", "action", "result", "status")


@dataclass(frozen=True)
class AccessEntry:
    at: str  # ISO 8601, UTC
    plan_id: str
    subject: str
    role: str
    on_behalf_of: str | None
    action: str  # read_plan | read_plan_as_of | read_timeline | read_access_log | write_events | open_plan
    result: str  # allowed | denied | not_found | rejected
    status: int


class _Batcher:
    def __init__(self, write, interval: float = 0.05, max_batch: int = 500):
        self._write, self._interval, self._max = write, interval, max_batch
        self._pending: list[AccessEntry] = []
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()  # one flush at a time, so entries stay in order
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def add(self, entry: AccessEntry) -> None:
        with self._cond:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
                self._thread.start()
            self._pending.append(entry)
            if len(self._pending) >= self._max:
                self._cond.notify()

    def flush(self) -> None:
        # Requests only ever wait for the list swap, never for the database.
        with self._write_lock:
            with self._cond:
                batch, self._pending = self._pending, []
            if batch:
                try:
                    self._write(batch)
                except Exception:
                    with self._cond:  # keep them, in order, for the next turn
                        self._pending[:0] = batch
                    raise

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait(self._interval)
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - keep the entries for the next turn
                pass


class MemoryAccessLog:
    def __init__(self) -> None:
        self._rows: list[AccessEntry] = []
        self._lock = threading.Lock()

    def record(self, entry: AccessEntry) -> None:
        with self._lock:
            self._rows.append(entry)

    def entries(self, plan_id: str, limit: int = 100, before: int | None = None) -> list[tuple[int, AccessEntry]]:
        with self._lock:
            rows = [(i + 1, e) for i, e in enumerate(self._rows) if e.plan_id == plan_id]
        rows = [r for r in rows if before is None or r[0] < before]
        return list(reversed(rows))[:limit]

    def flush(self) -> None:
        pass


class SQLAccessLog:
    """SQLite (a file of its own) or PostgreSQL (a table beside the events)."""

    def __init__(self, connect, placeholder: str, id_column: str):
        self._connect, self._ph = connect, placeholder
        with self._connect() as db:
            db.execute(f"CREATE TABLE IF NOT EXISTS careplan_access_log (id {id_column}, "
                       "at TEXT NOT NULL, plan_id TEXT NOT NULL, subject TEXT NOT NULL, role TEXT NOT NULL, "
                       "on_behalf_of TEXT, action TEXT NOT NULL, result TEXT NOT NULL, status INTEGER NOT NULL)")
            db.execute("CREATE INDEX IF NOT EXISTS careplan_access_log_plan ON careplan_access_log (plan_id, id)")
        self._batcher = _Batcher(self._write)

    def _write(self, batch: list[AccessEntry]) -> None:
        marks = ", ".join([self._ph] * len(COLUMNS))
        with self._connect() as db:
            cur = db.cursor()
            cur.executemany(f"INSERT INTO careplan_access_log ({', '.join(COLUMNS)}) VALUES ({marks})",
                            [astuple(e) for e in batch])

    def record(self, entry: AccessEntry) -> None:
        self._batcher.add(entry)

    def flush(self) -> None:
        self._batcher.flush()

    def entries(self, plan_id: str, limit: int = 100, before: int | None = None) -> list[tuple[int, AccessEntry]]:
        self.flush()
        ph = self._ph
        sql = f"SELECT id, {', '.join(COLUMNS)} FROM careplan_access_log WHERE plan_id = {ph}"
        params: list[Any] = [plan_id]
        if before is not None:
            sql += f" AND id < {ph}"
            params.append(before)
        sql += f" ORDER BY id DESC LIMIT {ph}"
        params.append(limit)
        with self._connect() as db:
            rows = db.execute(sql, params).fetchall()
        return [(int(r[0]), AccessEntry(*r[1:])) for r in rows]


def sqlite_access_log(path: Path) -> SQLAccessLog:
    private_sqlite(path)  # folder 0700, files 0600

    class _Conn:
        def __enter__(self):
            self.db = sqlite3.connect(path, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            return self.db

        def __exit__(self, kind, *_):
            if kind is None:
                self.db.commit()
            self.db.close()

    return SQLAccessLog(_Conn, "?", "INTEGER PRIMARY KEY AUTOINCREMENT")


def postgres_access_log(conninfo: str, schema: str) -> SQLAccessLog:
    import psycopg

    options = f"-c search_path={schema}" if schema else None

    def connect():
        return psycopg.connect(conninfo, options=options) if options else psycopg.connect(conninfo)

    return SQLAccessLog(connect, "%s", "BIGSERIAL PRIMARY KEY")


def now_iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")
