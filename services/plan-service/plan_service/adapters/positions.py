"""Where the relay records how far it has published, and who may relay (leader lock).

The position lives in the same database as the event store. Leadership: a PostgreSQL
advisory lock held on a dedicated connection (released by the server if the process
dies), or an exclusive file lock beside the SQLite file, or a process-local lock.
"""

from __future__ import annotations

import fcntl
import sqlite3
import threading
import zlib
from pathlib import Path
from typing import Any


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
        # the table: adapters/migrations (`plan-service migrate`)

    def load(self) -> int:
        if self._leader_conn is not None and not self._leader_conn.closed:
            return self._read(self._leader_conn)
        with self._psycopg.connect(self.conninfo, autocommit=True) as db:
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
            conn = self._psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5)
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


def postgres_conninfo(env: dict[str, str]) -> str:
    parts = {
        "dbname": env.get("POSTGRES_DBNAME", ""), "host": env.get("POSTGRES_HOST", "127.0.0.1"),
        "port": env.get("POSTGRES_PORT", "5432"), "user": env.get("POSTGRES_USER", ""),
        "password": env.get("POSTGRES_PASSWORD", ""),
    }
    return " ".join(f"{k}={v}" for k, v in parts.items() if v)


