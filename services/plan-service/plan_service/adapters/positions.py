"""Where the relay records how far it has published, and who may relay (leader lock), and
how a commit in one process wakes the relay in another.

The position lives in the same database as the event store. Leadership: a PostgreSQL
advisory lock held on a dedicated connection (released by the server if the process
dies), or an exclusive file lock beside the SQLite file, or a process-local lock.

Wake-ups across processes (gunicorn workers commit, one of them relays; or `plan-service
relay` on its own): on PostgreSQL, ``PostgresCommitSignal`` (NOTIFY after each group commit,
LISTEN in the relay's process). A signal is only a hint to look now: the relay still reads
from its recorded position, and still polls as a fallback, so a lost signal costs a poll
interval, never an event.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from plan_service.adapters.persistence import CONNECTION_KWARGS

log = logging.getLogger("careplan.relay")

# Every connection here takes CONNECTION_KWARGS: a server that does not answer is given up
# after 2 s (connect) or seconds (TCP keepalives; the leader's lock connection too).


class MemoryPositions:
    def __init__(self) -> None:
        self._position = 0
        self._lock = threading.Lock()

    def load(self) -> int:
        return self._position

    def save(self, position: int) -> None:
        self._position = position

    def acquire_leadership(self, timeout: float) -> bool:
        return self._lock.acquire(timeout=timeout)

    def release_leadership(self) -> None:
        if self._lock.locked():
            self._lock.release()


class SQLitePositions:
    def __init__(self, db_path: Path, relay: str):
        self.db_path, self.relay = db_path, relay
        self._lock_file: Any = None  # the table: adapters/migrations (`plan-service migrate`)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.db_path, timeout=10, isolation_level=None)

    def load(self) -> int:
        with self._connect() as db:
            row = db.execute("SELECT position FROM careplan_relay_position WHERE relay = ?",
                             (self.relay,)).fetchone()
        return int(row[0]) if row else 0

    def save(self, position: int) -> None:
        db = self._connect()
        try:
            db.execute("INSERT INTO careplan_relay_position (relay, position) VALUES (?, ?) "
                       "ON CONFLICT (relay) DO UPDATE SET position = excluded.position",
                       (self.relay, position))
        finally:
            db.close()

    def acquire_leadership(self, timeout: float) -> bool:
        path = self.db_path.with_name(self.db_path.name + f".{self.relay}.relay-lock")
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._lock_file = handle
        return True

    def release_leadership(self) -> None:
        if self._lock_file:
            self._lock_file.close()
            self._lock_file = None


class PostgresPositions:
    def __init__(self, conninfo: str, schema: str, relay: str):
        import psycopg

        self._psycopg = psycopg
        self.conninfo, self.relay = conninfo, relay
        self.table = f'"{schema}".careplan_relay_position' if schema else "careplan_relay_position"
        self._leader_conn: Any = None
        self._lock_key = zlib.crc32(f"careplan-relay:{schema}:{relay}".encode())
        self._signal: PostgresCommitSignal | None = None
        # the table: adapters/migrations (`plan-service migrate`)

    def commit_signal(self) -> PostgresCommitSignal:
        """The wake-up channel of this relay (same schema and relay name: same channel)."""
        if self._signal is None:
            self._signal = PostgresCommitSignal(self.conninfo, f"careplan_relay_{self._lock_key:08x}")
        return self._signal

    def load(self) -> int:
        if self._leader_conn is not None and not self._leader_conn.closed:
            return self._read(self._leader_conn)
        with self._psycopg.connect(self.conninfo, autocommit=True, **CONNECTION_KWARGS) as db:
            return self._read(db)

    def _read(self, db: Any) -> int:
        row = db.execute(f"SELECT position FROM {self.table} WHERE relay = %s",
                         (self.relay,)).fetchone()
        return int(row[0]) if row else 0

    def save(self, position: int) -> None:
        if self._leader_conn is None or self._leader_conn.closed:
            raise RuntimeError("not the leader")
        # On the leader's own connection: if that connection (and its lock) is gone, the
        # write fails instead of racing a new leader.
        self._leader_conn.execute(
            f"INSERT INTO {self.table} (relay, position) VALUES (%s, %s) "
            "ON CONFLICT (relay) DO UPDATE SET position = excluded.position",
            (self.relay, position))

    def acquire_leadership(self, timeout: float) -> bool:
        try:
            conn = self._psycopg.connect(self.conninfo, autocommit=True, **CONNECTION_KWARGS)
        except self._psycopg.Error:
            return False
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self._lock_key,)).fetchone()
        assert row is not None  # a SELECT without FROM returns one row
        got = row[0]
        if not got:
            conn.close()
            return False
        self._leader_conn = conn
        return True

    def release_leadership(self) -> None:
        if self._leader_conn is not None:
            self._leader_conn.close()
            self._leader_conn = None


class PostgresCommitSignal:
    """NOTIFY on one channel after commits; LISTEN to it where the relay runs.

    ``send`` is called by the group committer after every batch it stored: it only sets a
    flag, and a thread of this process (started on first use, in the process that uses it:
    safe after gunicorn forks) sends one ``NOTIFY`` for all the commits since its last one,
    on its own autocommit connection, so the committer never waits for the database. A
    notification is delivered when the NOTIFY commits, and the group commit it follows has
    committed before ``send`` was called: a relay that wakes on it finds those events.

    ``listen`` runs in the relay's process while it leads: LISTEN on a dedicated connection,
    ``on_signal`` for every notification. A connection lost (the server restarting, say) is
    opened again; meanwhile the relay's poll is the fallback.
    """

    def __init__(self, conninfo: str, channel: str, retry_after: float = 1.0):
        import psycopg
        from psycopg import sql

        self._psycopg = psycopg
        self.conninfo, self.channel, self.retry_after = conninfo, channel, retry_after
        self._notify = sql.SQL("NOTIFY {}").format(sql.Identifier(channel))
        self._listen = sql.SQL("LISTEN {}").format(sql.Identifier(channel))
        self._pending = threading.Event()
        self._sender: threading.Thread | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()
        self.sent = 0  # NOTIFYs sent (each may stand for many commits)
        self.failures = 0

    def send(self) -> None:
        self._pending.set()
        if self._sender is None or self._pid != os.getpid() or not self._sender.is_alive():
            with self._lock:
                if self._sender is None or self._pid != os.getpid() or not self._sender.is_alive():
                    self._pid = os.getpid()
                    self._sender = threading.Thread(target=self._send_forever, name="relay-notify", daemon=True)
                    self._sender.start()

    def _send_forever(self) -> None:
        conn: Any = None
        while True:
            self._pending.wait()
            self._pending.clear()  # commits after this point raise it again: one more NOTIFY
            try:
                if conn is None or conn.closed:
                    conn = self._psycopg.connect(self.conninfo, autocommit=True, **CONNECTION_KWARGS)
                conn.execute(self._notify)
                self.sent += 1
            except self._psycopg.Error as e:
                self.failures += 1
                log.warning("relay wake-up not sent (the relay's poll covers it)",
                            extra={"error_type": type(e).__name__})
                if conn is not None:
                    conn.close()
                conn = None
                threading.Event().wait(self.retry_after)

    def listen(self, on_signal: Callable[[], None], stop: threading.Event) -> None:
        """Call ``on_signal`` for every notification until ``stop`` is set."""
        while not stop.is_set():
            try:
                with self._psycopg.connect(self.conninfo, autocommit=True, **CONNECTION_KWARGS) as conn:
                    conn.execute(self._listen)
                    on_signal()  # whatever was committed while nobody listened
                    while not stop.is_set():
                        for _ in conn.notifies(timeout=0.5):
                            on_signal()
            except self._psycopg.Error as e:
                log.warning("listening for relay wake-ups failed; trying again (the relay polls meanwhile)",
                            extra={"error_type": type(e).__name__})
                stop.wait(self.retry_after)

    def start_listening(self, on_signal: Callable[[], None]) -> threading.Event:
        """``listen`` in a thread of its own; set the returned event to stop it."""
        stop = threading.Event()
        threading.Thread(target=self.listen, args=(on_signal, stop), name="relay-listen", daemon=True).start()
        return stop


def postgres_conninfo(env: dict[str, str]) -> str:
    parts = {
        "dbname": env.get("POSTGRES_DBNAME", ""), "host": env.get("POSTGRES_HOST", "127.0.0.1"),
        "port": env.get("POSTGRES_PORT", "5432"), "user": env.get("POSTGRES_USER", ""),
        "password": env.get("POSTGRES_PASSWORD", ""),
    }
    return " ".join(f"{k}={v}" for k, v in parts.items() if v)


