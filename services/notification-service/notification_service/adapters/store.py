"""The service's own store (SQLite by default, PostgreSQL in production): plan views, prompts,
consumer positions, dead letters and the delivery outbox, all changed in one transaction.

Times are stored as UTC ISO-8601 text of one fixed width, so they sort as text on both engines.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS plan_views (
        plan_id TEXT PRIMARY KEY, version INTEGER NOT NULL, state TEXT NOT NULL,
        next_check_at TEXT)""",
    "CREATE INDEX IF NOT EXISTS plan_views_next_check ON plan_views (next_check_at)",
    """CREATE TABLE IF NOT EXISTS prompts (
        id TEXT PRIMARY KEY, plan_id TEXT NOT NULL, rule TEXT NOT NULL, subject TEXT NOT NULL,
        recipient TEXT, status TEXT NOT NULL, due_at TEXT NOT NULL, escalate_at TEXT,
        escalated_at TEXT, created_at TEXT NOT NULL, acknowledged_at TEXT, resolved_at TEXT,
        details TEXT NOT NULL, UNIQUE (plan_id, rule, subject))""",
    "CREATE INDEX IF NOT EXISTS prompts_inbox ON prompts (recipient, status, due_at)",
    "CREATE INDEX IF NOT EXISTS prompts_escalation ON prompts (status, escalate_at)",
    """CREATE TABLE IF NOT EXISTS consumer_positions (
        source TEXT NOT NULL, part INTEGER NOT NULL, position BIGINT NOT NULL,
        PRIMARY KEY (source, part))""",
    """CREATE TABLE IF NOT EXISTS dead_letters (
        id TEXT PRIMARY KEY, source TEXT NOT NULL, part INTEGER NOT NULL, position BIGINT NOT NULL,
        event_id TEXT, reason TEXT NOT NULL, payload TEXT NOT NULL, created_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS deliveries (
        id TEXT PRIMARY KEY, prompt_id TEXT NOT NULL, channel TEXT NOT NULL, kind TEXT NOT NULL,
        status TEXT NOT NULL, attempts INTEGER NOT NULL, next_attempt_at TEXT NOT NULL,
        last_error TEXT, created_at TEXT NOT NULL, UNIQUE (prompt_id, channel, kind))""",
    "CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_attempt_at)",
]

PROMPT_COLUMNS = ("id", "plan_id", "rule", "subject", "recipient", "status", "due_at", "escalate_at",
                  "escalated_at", "created_at", "acknowledged_at", "resolved_at", "details")


def ts(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def from_ts(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass
class Prompt:
    id: str
    plan_id: str
    rule: str
    subject: str
    recipient: str | None
    status: str  # open | acknowledged | resolved
    due_at: datetime
    escalate_at: datetime | None
    escalated_at: datetime | None
    created_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    details: dict[str, Any]

    @classmethod
    def from_row(cls, row: tuple) -> Prompt:
        data = dict(zip(PROMPT_COLUMNS, row))
        for key in ("due_at", "escalate_at", "escalated_at", "created_at", "acknowledged_at", "resolved_at"):
            data[key] = from_ts(data[key])
        data["details"] = json.loads(data["details"])
        return cls(**data)


class Tx:
    """One transaction: the queries the application needs, nothing else."""

    def __init__(self, cursor: Any, placeholder: str):
        self._cur = cursor
        self._ph = placeholder

    def _q(self, sql: str, params: tuple = ()) -> Any:
        self._cur.execute(sql.replace("?", self._ph) if self._ph != "?" else sql, params)
        return self._cur

    # positions
    def position(self, source: str, part: int) -> int | None:
        row = self._q("SELECT position FROM consumer_positions WHERE source = ? AND part = ?",
                      (source, part)).fetchone()
        return int(row[0]) if row else None

    def positions(self, source: str) -> dict[int, int]:
        rows = self._q("SELECT part, position FROM consumer_positions WHERE source = ?", (source,))
        return {int(p): int(pos) for p, pos in rows.fetchall()}

    def set_position(self, source: str, part: int, position: int) -> None:
        self._q("INSERT INTO consumer_positions (source, part, position) VALUES (?, ?, ?) "
                "ON CONFLICT (source, part) DO UPDATE SET position = excluded.position",
                (source, part, position))

    # plan views
    def load_view(self, plan_id: str) -> dict[str, Any] | None:
        row = self._q("SELECT state FROM plan_views WHERE plan_id = ?", (plan_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def save_view(self, plan_id: str, version: int, state: dict[str, Any], next_check: datetime | None) -> None:
        self._q("INSERT INTO plan_views (plan_id, version, state, next_check_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (plan_id) DO UPDATE SET version = excluded.version, state = excluded.state, "
                "next_check_at = excluded.next_check_at",
                (plan_id, version, json.dumps(state), ts(next_check)))

    def views_due(self, now: datetime, limit: int) -> list[str]:
        rows = self._q("SELECT plan_id FROM plan_views WHERE next_check_at IS NOT NULL AND next_check_at <= ? "
                       "ORDER BY next_check_at LIMIT ?", (ts(now), limit))
        return [r[0] for r in rows.fetchall()]

    # prompts
    def prompts_of_plan(self, plan_id: str) -> list[Prompt]:
        rows = self._q(f"SELECT {', '.join(PROMPT_COLUMNS)} FROM prompts WHERE plan_id = ?", (plan_id,))
        return [Prompt.from_row(r) for r in rows.fetchall()]

    def insert_prompt(self, prompt: Prompt) -> None:
        values = (prompt.id, prompt.plan_id, prompt.rule, prompt.subject, prompt.recipient, prompt.status,
                  ts(prompt.due_at), ts(prompt.escalate_at), ts(prompt.escalated_at), ts(prompt.created_at),
                  ts(prompt.acknowledged_at), ts(prompt.resolved_at), json.dumps(prompt.details))
        self._q(f"INSERT INTO prompts ({', '.join(PROMPT_COLUMNS)}) VALUES ({', '.join('?' * len(values))})",
                values)

    def resolve_prompt(self, prompt_id: str, at: datetime) -> None:
        self._q("UPDATE prompts SET status = 'resolved', resolved_at = ? WHERE id = ? AND status = 'open'",
                (ts(at), prompt_id))

    def set_recipient(self, prompt_id: str, recipient: str | None) -> None:
        self._q("UPDATE prompts SET recipient = ? WHERE id = ?", (recipient, prompt_id))

    def prompt(self, prompt_id: str) -> Prompt | None:
        row = self._q(f"SELECT {', '.join(PROMPT_COLUMNS)} FROM prompts WHERE id = ?", (prompt_id,)).fetchone()
        return Prompt.from_row(row) if row else None

    def inbox(self, recipient: str, statuses: tuple[str, ...], limit: int) -> list[Prompt]:
        marks = ", ".join("?" * len(statuses))
        rows = self._q(f"SELECT {', '.join(PROMPT_COLUMNS)} FROM prompts WHERE recipient = ? "
                       f"AND status IN ({marks}) ORDER BY due_at, id LIMIT ?", (recipient, *statuses, limit))
        return [Prompt.from_row(r) for r in rows.fetchall()]

    def acknowledge(self, prompt_id: str, at: datetime) -> None:
        self._q("UPDATE prompts SET status = 'acknowledged', acknowledged_at = ? WHERE id = ? AND status = 'open'",
                (ts(at), prompt_id))

    def to_escalate(self, now: datetime, limit: int) -> list[Prompt]:
        rows = self._q(f"SELECT {', '.join(PROMPT_COLUMNS)} FROM prompts WHERE status = 'open' "
                       "AND escalate_at IS NOT NULL AND escalate_at <= ? AND escalated_at IS NULL "
                       "ORDER BY escalate_at LIMIT ?", (ts(now), limit))
        return [Prompt.from_row(r) for r in rows.fetchall()]

    def mark_escalated(self, prompt_id: str, at: datetime) -> None:
        self._q("UPDATE prompts SET escalated_at = ? WHERE id = ?", (ts(at), prompt_id))

    def count_prompts(self) -> int:
        return int(self._q("SELECT COUNT(*) FROM prompts").fetchone()[0])

    # dead letters
    def dead_letter(self, source: str, part: int, position: int, event_id: str | None, reason: str,
                    payload: str, at: datetime) -> None:
        self._q("INSERT INTO dead_letters (id, source, part, position, event_id, reason, payload, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (uuid.uuid4().hex, source, part, position, event_id, reason[:500], payload, ts(at)))

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._q("SELECT source, part, position, event_id, reason, created_at FROM dead_letters "
                       "ORDER BY created_at LIMIT ?", (limit,))
        keys = ("source", "part", "position", "event_id", "reason", "created_at")
        return [dict(zip(keys, r)) for r in rows.fetchall()]

    # delivery outbox
    def enqueue_delivery(self, prompt_id: str, channel: str, kind: str, at: datetime) -> None:
        self._q("INSERT INTO deliveries (id, prompt_id, channel, kind, status, attempts, next_attempt_at, "
                "created_at) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?) "
                "ON CONFLICT (prompt_id, channel, kind) DO NOTHING",
                (uuid.uuid4().hex, prompt_id, channel, kind, ts(at), ts(at)))

    def deliveries_due(self, now: datetime, limit: int) -> list[dict[str, Any]]:
        rows = self._q("SELECT id, prompt_id, channel, kind, attempts FROM deliveries WHERE status = 'pending' "
                       "AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?", (ts(now), limit))
        return [dict(zip(("id", "prompt_id", "channel", "kind", "attempts"), r)) for r in rows.fetchall()]

    def delivery_done(self, delivery_id: str, status: str, attempts: int, error: str | None,
                      next_attempt: datetime | None) -> None:
        self._q("UPDATE deliveries SET status = ?, attempts = ?, last_error = ?, "
                "next_attempt_at = COALESCE(?, next_attempt_at) WHERE id = ?",
                (status, attempts, error, ts(next_attempt), delivery_id))

    def deliveries_of(self, prompt_id: str) -> list[dict[str, Any]]:
        rows = self._q("SELECT channel, kind, status, attempts, last_error FROM deliveries WHERE prompt_id = ? "
                       "ORDER BY created_at", (prompt_id,))
        return [dict(zip(("channel", "kind", "status", "attempts", "last_error"), r)) for r in rows.fetchall()]


class SQLiteStore:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._write_lock = threading.Lock()  # one writer in this process; others wait in SQLite
        with self.transaction() as tx:
            for statement in SCHEMA:
                tx._q(statement)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        db = self._connect()
        try:
            with self._write_lock:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield Tx(db.cursor(), "?")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
        finally:
            db.close()

    def close(self) -> None:
        pass


class PostgresStore:
    def __init__(self, conninfo: str, pool_size: int = 8):
        from psycopg_pool import ConnectionPool

        self.pool = ConnectionPool(conninfo, min_size=1, max_size=pool_size, open=True,
                                   kwargs={"autocommit": False})
        with self.transaction() as tx:
            tx._q("SELECT pg_advisory_xact_lock(8082)")  # two instances creating tables at once
            for statement in SCHEMA:
                tx._q(statement)

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self.pool.connection() as db:
            with db.transaction():
                with db.cursor() as cur:
                    yield Tx(cur, "%s")

    def close(self) -> None:
        self.pool.close()
