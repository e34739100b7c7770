"""The access log: who read or changed which plan, when, in what role, with what result.

Append-only (no update or delete path exists). The patient has a right to read it
(pasientjournalloven § 18), so no read goes without its entry: ``append`` returns only once the
entry is durable. Concurrent requests are group-committed by one writer thread (one commit for
all the entries waiting), so a read pays about one commit, not one each. When the log cannot be
written, ``append`` raises ``AccessLogUnavailable`` (the API then answers 503 and shows
nothing); what is handed to ``keep`` is written once the store is back. The queue is bounded:
past it, ``append`` fails at once instead of growing without limit.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import astuple, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from careplan_shared.files import private_sqlite

log = logging.getLogger("careplan.access_log")
COLUMNS = ("at", "plan_id", "subject", "role", "on_behalf_of", "action", "result", "status")


@dataclass(frozen=True)
class AccessEntry:
    at: str  # ISO 8601, UTC
    plan_id: str
    subject: str
    role: str
    on_behalf_of: str | None
    action: str  # read_plan | read_plan_as_of | read_plan_fhir[_as_of] | read_timeline | read_access_log | write_events | open_plan
    result: str  # allowed | denied | not_found | rejected | unavailable (refused: could not be logged)
    status: int


class AccessLogUnavailable(Exception):
    """The access log could not be written (store down, queue full, too slow)."""


class _Waiting:
    __slots__ = ("entry", "done", "error", "taken")

    def __init__(self, entry: AccessEntry):
        self.entry = entry
        self.done = threading.Event()
        self.error: str | None = None
        self.taken = False  # the writer has it: it will be written or fail, it cannot be withdrawn


class _GroupWriter:
    """One writer thread per process: takes every fresh entry waiting (up to ``max_batch``),
    writes them in one transaction, and wakes their waiters. Entries handed to ``keep`` (not
    waited for) are written apart, after the fresh ones, and stay, in order, until written: an
    entry the store refuses on its own while the store otherwise works is dropped and counted,
    so it can never hold up the rest (bounded: past ``max_kept`` the oldest are dropped, counted).
    """

    def __init__(self, write: Callable[[list[AccessEntry]], None], *, max_pending: int = 10_000,
                 max_batch: int = 1_000, max_kept: int = 100_000, retry_seconds: float = 1.0):
        self._write = write
        self.max_pending, self.max_batch, self.max_kept, self.retry_seconds = (
            max_pending, max_batch, max_kept, retry_seconds)
        self._waiting: deque[_Waiting] = deque()
        self._kept: deque[AccessEntry] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self.written = 0
        self.failed_writes = 0
        self.dropped = 0
        self.last_error: str | None = None
        self.writing_since: float | None = None  # a write under way since (monotonic)

    def submit(self, entry: AccessEntry) -> _Waiting:
        waiting = _Waiting(entry)
        with self._cond:
            if len(self._waiting) >= self.max_pending:
                raise AccessLogUnavailable("the access log's queue is full")
            self._ensure_thread()
            self._waiting.append(waiting)
            self._cond.notify()
        return waiting

    def withdraw(self, waiting: _Waiting) -> bool:
        """Take back an entry the writer has not taken yet (True); False: it is being written."""
        with self._cond:
            if waiting.taken:
                return False
            self._waiting.remove(waiting)
            return True

    def keep(self, entries: list[AccessEntry]) -> None:
        with self._cond:
            self._kept.extend(entries)
            self._drop_overflow()
            self._ensure_thread()
            self._cond.notify()

    def _drop_overflow(self) -> None:
        overflow = len(self._kept) - self.max_kept
        if overflow > 0:
            for _ in range(overflow):
                self._kept.popleft()
            self._count_dropped(overflow, "the store has been down too long")

    def _count_dropped(self, count: int, why: str) -> None:
        self.dropped += count
        log.error(f"access-log entries dropped: {why}", extra={"count": count})

    def _ensure_thread(self) -> None:
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._kept:
                    self._cond.wait()
                batch = [self._waiting.popleft() for _ in range(min(len(self._waiting), self.max_batch))]
                for waiting in batch:
                    waiting.taken = True
            fresh_ok = self._write_fresh(batch) if batch else None
            if not self._write_kept(fresh_ok):
                # The store is down: do not spin on the kept ones; but a fresh entry (a request
                # waiting for it) is tried at once, not after this pause.
                with self._cond:
                    self._cond.wait_for(lambda: bool(self._waiting), self.retry_seconds)

    def _attempt(self, entries: list[AccessEntry]) -> str | None:
        """Write; None, or the error's type (logged and counted)."""
        self.writing_since = time.monotonic()
        try:
            self._write(entries)
        except Exception as e:  # noqa: BLE001 - reported to the waiters, logged and counted
            self.failed_writes += 1
            self.last_error = type(e).__name__
            log.error("access log write failed", extra={"error_type": self.last_error, "count": len(entries)})
            return self.last_error
        finally:
            self.writing_since = None
        self.written += len(entries)
        self.last_error = None
        return None

    def _write_fresh(self, batch: list[_Waiting]) -> bool:
        error = self._attempt([w.entry for w in batch])
        for waiting in batch:
            waiting.error = error
            waiting.done.set()
        return error is None

    def _write_kept(self, store_works: bool | None) -> bool:
        """Write the kept entries; False when the store seems down (retry later)."""
        with self._cond:
            kept = list(self._kept)
        if not kept:
            return True
        if store_works is False:
            return False  # it just refused the fresh ones: try the kept ones after the pause
        if self._attempt(kept) is None:
            self._forget(kept)
            return True
        if not store_works:
            return False
        # The store took the fresh entries but not these: find the ones it refuses on their own.
        refused = 0
        for entry in kept:
            if self._attempt([entry]) is not None:
                refused += 1
            self._forget([entry])
        if refused:
            self._count_dropped(refused, "the store refuses them (e.g. characters it cannot hold)")
        return True

    def _forget(self, written: list[AccessEntry]) -> None:
        """Drop what was written from the front of the kept entries (keep() only appends)."""
        with self._cond:
            for entry in written:
                if self._kept and self._kept[0] is entry:
                    self._kept.popleft()

    def status(self) -> dict[str, Any]:
        with self._cond:
            waiting, kept = len(self._waiting), len(self._kept)
        since = self.writing_since
        return {"written": self.written, "waiting": waiting, "kept_for_retry": kept,
                "failed_writes": self.failed_writes, "dropped": self.dropped, "last_error": self.last_error,
                "write_under_way_seconds": round(time.monotonic() - since, 1) if since is not None else None}


def _wait(writer: _GroupWriter, waiting: _Waiting, timeout: float) -> None:
    """Until the entry is durable. Past ``timeout`` an entry not yet taken is withdrawn (it will
    not be written behind the caller's back); one being written is waited for to the end (the
    store's own timeouts bound it), so what the caller answers and what the log says agree."""
    if not waiting.done.wait(timeout):
        if writer.withdraw(waiting):
            raise AccessLogUnavailable("the access log did not answer in time")
        waiting.done.wait()
    if waiting.error is not None:
        raise AccessLogUnavailable(f"the access log could not be written ({waiting.error})")


class MemoryAccessLog:
    def __init__(self) -> None:
        self._rows: list[AccessEntry] = []
        self._lock = threading.Lock()

    def append(self, entry: AccessEntry) -> None:
        with self._lock:
            self._rows.append(entry)

    def keep(self, entries: list[AccessEntry]) -> None:
        for entry in entries:
            self.append(entry)

    def status(self) -> dict[str, Any]:
        return {"written": len(self._rows), "last_error": None}

    def entries(self, plan_id: str, limit: int = 100, before: int | None = None) -> list[tuple[int, AccessEntry]]:
        with self._lock:
            rows = [(i + 1, e) for i, e in enumerate(self._rows) if e.plan_id == plan_id]
        rows = [r for r in rows if before is None or r[0] < before]
        return list(reversed(rows))[:limit]


class SQLAccessLog:
    """SQLite (a file of its own) or PostgreSQL (a table beside the events)."""

    def __init__(self, connect: Callable[[], Any], placeholder: str, timeout: float = 5.0):
        # The table: adapters/migrations (`plan-service migrate`), never made here.
        self._connect, self._ph = connect, placeholder
        self._writer = _GroupWriter(self._write)
        self._db: Any = None  # the writer thread's connection, opened again after a failure
        self.timeout = timeout

    def _write(self, batch: list[AccessEntry]) -> None:
        marks = ", ".join([self._ph] * len(COLUMNS))
        try:
            if self._db is None:
                self._db = self._connect()
            cur = self._db.cursor()
            cur.executemany(f"INSERT INTO careplan_access_log ({', '.join(COLUMNS)}) VALUES ({marks})",
                            [astuple(e) for e in batch])
            self._db.commit()
        except Exception:
            db, self._db = self._db, None
            if db is not None:
                _close_quietly(db)
            raise

    def append(self, entry: AccessEntry) -> None:
        """Returns once the entry is durable; AccessLogUnavailable if it cannot be."""
        _wait(self._writer, self._writer.submit(entry), self.timeout)

    def keep(self, entries: list[AccessEntry]) -> None:
        """Write these when the store can take them; do not wait."""
        self._writer.keep(entries)

    def status(self) -> dict[str, Any]:
        return self._writer.status()

    def entries(self, plan_id: str, limit: int = 100, before: int | None = None) -> list[tuple[int, AccessEntry]]:
        ph = self._ph
        sql = f"SELECT id, {', '.join(COLUMNS)} FROM careplan_access_log WHERE plan_id = {ph}"
        params: list[Any] = [plan_id]
        if before is not None:
            sql += f" AND id < {ph}"
            params.append(before)
        sql += f" ORDER BY id DESC LIMIT {ph}"
        params.append(limit)
        db = self._connect()
        try:
            rows = db.execute(sql, params).fetchall()
        finally:
            _close_quietly(db)
        return [(int(r[0]), AccessEntry(*r[1:])) for r in rows]


def _close_quietly(db: Any) -> None:
    try:
        db.close()
    except Exception as e:  # noqa: BLE001 - a broken connection; the failure that broke it is reported
        log.debug("closing a broken access-log connection failed", extra={"error_type": type(e).__name__})


def sqlite_access_log(path: Path) -> SQLAccessLog:
    private_sqlite(path)  # folder 0700, files 0600

    def connect() -> sqlite3.Connection:
        db = sqlite3.connect(path, timeout=5, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    return SQLAccessLog(connect, "?")


def postgres_access_log(conninfo: str, schema: str) -> SQLAccessLog:
    import psycopg

    from plan_service.adapters.persistence import CONNECTION_KWARGS, postgres_connection_options

    # A statement never hangs the writer: past 5 s it fails, and the waiting reads answer 503;
    # a server that does not answer is given up after 2 s (connect) or seconds (TCP keepalives).
    options = postgres_connection_options(schema)

    def connect():
        return psycopg.connect(conninfo, options=options, **CONNECTION_KWARGS)

    return SQLAccessLog(connect, "%s")


def now_iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")
