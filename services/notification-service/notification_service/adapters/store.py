"""The service's own store (SQLite by default, PostgreSQL in production): plan views, prompts,
consumer positions, dead letters and the delivery outbox, all changed in one transaction.

Times are stored as UTC ISO-8601 text of one fixed width, so they sort as text on both engines.
Plan content (view state, prompt details, dead-lettered payloads) is encrypted with the store's
cipher (adapters/crypto.py). The SQLite file, its WAL/SHM files and the key are 0600, their
folder 0700.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from careplan_shared.files import private_sqlite
from careplan_shared.postgres import CONNECT_KWARGS
from notification_service.adapters.crypto import Cipher, StoreUnreadable, seal, unseal
from notification_service.domain.dead_letters import DeadLetter, DeadLetterStatus, OpenDeadLetter
from notification_service.domain.deliveries import DeliveryKind, DeliveryState, DeliveryStatus, DueDelivery
from notification_service.domain.prompts import Prompt, PromptStatus, Reason

# The schema: adapters/migrations (Alembic revisions), brought up to date by
# `notification-service migrate`, by `serve` before its worker starts, or by a store opened
# with migrate=True (the default in-process; the served worker opens it with False).

PROMPT_COLUMNS = ("id", "plan_id", "rule", "subject", "recipient", "status", "due_at", "escalate_at",
                  "escalated_at", "created_at", "acknowledged_at", "resolved_at", "details", "history")


UTC_MIN = datetime.min.replace(tzinfo=timezone.utc)
UTC_MAX = datetime.max.replace(tzinfo=timezone.utc)
KEY_CHECK = "key-check"


def ts(moment: datetime | None) -> str | None:
    """Fixed width for every year (strftime's %Y drops the zeros of year 1..999 on Linux, and
    such text neither sorts nor parses back); a moment beyond UTC's range is clamped to it."""
    if moment is None:
        return None
    if moment.tzinfo is timezone.utc:  # most are (the clock's, the events'): no conversion
        return moment.isoformat(timespec="microseconds")
    try:
        utc = moment.astimezone(timezone.utc)
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00 is in year 0 in UTC
        utc = UTC_MIN if moment.year < 5000 else UTC_MAX
    return utc.isoformat(timespec="microseconds")


_SHORT_YEAR = re.compile(r"^(\d{1,3})-")


def from_ts(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:  # written by an older version with a year below 1000 ("1-06-30T...")
        return datetime.fromisoformat(_SHORT_YEAR.sub(lambda m: m.group(1).zfill(4) + "-", text))


# Stored state (views, prompt details) holds JSON values only: strings, integers well within
# 64 bits (versions are at most 2**31), booleans, null, lists and objects (times are tagged
# strings, PlanView.to_json). orjson writes and reads those as json does, several times faster.
_STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS  # refused, as json refuses them


def dumps(value: Any) -> str:
    """JSON text of stored state: orjson's (compact, UTF-8), or json's where orjson refuses
    (a lone surrogate, an integer beyond 64 bits, a key that is not a string: json writes
    those as it always did, or raises as it always did)."""
    try:
        return orjson.dumps(value, option=_STRICT).decode("utf-8")
    except (TypeError, ValueError):  # orjson.JSONEncodeError is a TypeError
        return json.dumps(value)


def loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except (TypeError, ValueError):  # e.g. an escaped lone surrogate json.dumps wrote: json reads it
        return json.loads(text)


def _prompt(row: tuple, cipher: Cipher | None) -> Prompt:
    (id_, plan_id, rule, subject, recipient, status, due_at, escalate_at, escalated_at, created_at,
     acknowledged_at, resolved_at, details, history) = row
    return Prompt(id_, plan_id, Reason(rule), subject, recipient, PromptStatus(status), _at(due_at),
                  from_ts(escalate_at), from_ts(escalated_at), _at(created_at), from_ts(acknowledged_at),
                  from_ts(resolved_at), loads(unseal(cipher, details, _context("prompts", id_))),
                  loads(history) if history else [])


def _at(text: str) -> datetime:
    """A NOT NULL time column."""
    moment = from_ts(text)
    if moment is None:
        raise ValueError("a required time is missing")
    return moment


def _context(table: str, key: str) -> str:
    """Associated data: a sealed value belongs to one column of one row."""
    return f"notification-service/{table}/{key}"


_UNSET: Any = object()
CHUNK = 500  # ids per IN (...) list: far below SQLite's limit on parameters

DEAD_LETTER_COLUMNS = ("source", "part", "position", "event_id", "reason", "created_at", "status", "resolved_at")


class Tx:
    """One transaction: the queries the application needs, nothing else. Implements
    application.ports.StoreTransaction (structurally: adapters do not import the application).
    Enum values are passed to the drivers as their plain strings."""

    def __init__(self, cursor: Any, placeholder: str, cipher: Cipher | None = None):
        self._cur = cursor
        self._ph = placeholder
        self._cipher = cipher
        # PostgreSQL: a view read to be rewritten is locked, so the clock, the consumer and
        # `dead-letters retry` never overwrite each other's update (SQLite has one writer).
        self._for_update = " FOR UPDATE" if placeholder == "%s" else ""

    def _q(self, sql: str, params: tuple = ()) -> Any:
        self._cur.execute(sql.replace("?", self._ph) if self._ph != "?" else sql, params)
        return self._cur

    def _many(self, sql: str, rows: Sequence[tuple]) -> None:
        """One statement for many rows: sqlite3's executemany, psycopg's in one pipeline (one
        round trip to the server, not one per row)."""
        if rows:
            self._cur.executemany(sql.replace("?", self._ph) if self._ph != "?" else sql, rows)

    def _insert(self, table: str, columns: Sequence[str], rows: Sequence[tuple]) -> None:
        """Plain INSERTs of many rows: sqlite3's executemany; on PostgreSQL one COPY (psycopg
        writes its rows in C: a fraction of executemany's cost a row). Atomic either way, in
        this transaction, and a unique key taken raises as the INSERT would."""
        if not rows:
            return
        if self._ph == "%s":
            with self._cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        self._cur.executemany(f"INSERT INTO {table} ({', '.join(columns)}) "
                              f"VALUES ({', '.join([self._ph] * len(columns))})", rows)

    def _in(self, column: str, values: Sequence[str]) -> tuple[str, tuple]:
        """``column IN (...)`` for a list of values: one array parameter on PostgreSQL."""
        if self._ph == "%s":
            return f"{column} = ANY(%s)", (list(values),)
        return f"{column} IN ({', '.join('?' * len(values))})", tuple(values)

    def _chunks(self, values: Collection[str]) -> Iterator[list[str]]:
        ordered = sorted(set(values))  # sorted: PostgreSQL takes the row locks in one order
        for start in range(0, len(ordered), CHUNK):
            yield ordered[start:start + CHUNK]

    # positions
    def position(self, source: str, part: int) -> int | None:
        row = self._q("SELECT position FROM consumer_positions WHERE source = ? AND part = ?",
                      (source, part)).fetchone()
        return int(row[0]) if row else None

    def positions(self, source: str) -> dict[int, int]:
        rows = self._q("SELECT part, position FROM consumer_positions WHERE source = ?", (source,))
        return {int(p): int(pos) for p, pos in rows.fetchall()}

    def set_position(self, source: str, part: int, position: int) -> None:
        self.set_positions(source, {part: position})

    def set_positions(self, source: str, positions: Mapping[int, int]) -> None:
        self._many("INSERT INTO consumer_positions (source, part, position) VALUES (?, ?, ?) "
                   "ON CONFLICT (source, part) DO UPDATE SET position = excluded.position",
                   [(source, part, position) for part, position in sorted(positions.items())])

    # plan views
    def load_view(self, plan_id: str) -> dict[str, Any] | None:
        return self.load_views([plan_id]).get(plan_id)

    def load_views(self, plan_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        views: dict[str, dict[str, Any]] = {}
        for chunk in self._chunks(plan_ids):
            where, params = self._in("plan_id", chunk)
            rows = self._q(f"SELECT plan_id, state FROM plan_views WHERE {where} ORDER BY plan_id{self._for_update}",
                           params).fetchall()
            for plan_id, state in rows:
                views[plan_id] = loads(unseal(self._cipher, state, _context("plan_views", plan_id)))
        return views

    def save_view(self, plan_id: str, version: int, state: dict[str, Any], next_check: datetime | None) -> None:
        self.save_views([(plan_id, version, state, next_check)])

    def save_views(self, views: Sequence[tuple[str, int, dict[str, Any], datetime | None]]) -> None:
        self._many("INSERT INTO plan_views (plan_id, version, state, next_check_at) VALUES (?, ?, ?, ?) "
                   "ON CONFLICT (plan_id) DO UPDATE SET version = excluded.version, state = excluded.state, "
                   "next_check_at = excluded.next_check_at",
                   [(plan_id, version, seal(self._cipher, dumps(state), _context("plan_views", plan_id)),
                     ts(next_check)) for plan_id, version, state, next_check in views])

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """SAVEPOINT on both engines: on PostgreSQL the only way a failed statement does not
        abort the whole transaction."""
        self._q("SAVEPOINT careplan_part")
        try:
            yield
        except BaseException:
            self._q("ROLLBACK TO SAVEPOINT careplan_part")
            raise
        self._q("RELEASE SAVEPOINT careplan_part")

    def postpone_check(self, plan_id: str, until: datetime) -> None:
        self._q("UPDATE plan_views SET next_check_at = ? WHERE plan_id = ?", (ts(until), plan_id))

    def views_due(self, now: datetime, limit: int) -> list[str]:
        rows = self._q("SELECT plan_id FROM plan_views WHERE next_check_at IS NOT NULL AND next_check_at <= ? "
                       "ORDER BY next_check_at LIMIT ?", (ts(now), limit))
        return [r[0] for r in rows.fetchall()]

    # prompts
    def prompts_of_plan(self, plan_id: str) -> list[Prompt]:
        return self.prompts_of_plans([plan_id]).get(plan_id, [])

    def prompts_of_plans(self, plan_ids: Collection[str]) -> dict[str, list[Prompt]]:
        prompts: dict[str, list[Prompt]] = {}
        for chunk in self._chunks(plan_ids):
            where, params = self._in("plan_id", chunk)
            for row in self._q(f"SELECT {', '.join(PROMPT_COLUMNS)} FROM prompts WHERE {where}", params).fetchall():
                prompt = _prompt(row, self._cipher)
                prompts.setdefault(prompt.plan_id, []).append(prompt)
        return prompts

    def insert_prompt(self, prompt: Prompt) -> None:
        self.insert_prompts([prompt])

    def insert_prompts(self, prompts: Sequence[Prompt]) -> None:
        stamps: dict[datetime | None, str | None] = {None: None}  # a batch's prompts share many moments

        def stamp(moment: datetime | None) -> str | None:
            text = stamps.get(moment, _UNSET)
            if text is _UNSET:
                text = stamps[moment] = ts(moment)
            return text  # type: ignore[return-value]

        self._insert("prompts", PROMPT_COLUMNS,
                     [(p.id, p.plan_id, str(p.rule), p.subject, p.recipient, str(p.status), stamp(p.due_at),
                       stamp(p.escalate_at), stamp(p.escalated_at), stamp(p.created_at), stamp(p.acknowledged_at),
                       stamp(p.resolved_at), seal(self._cipher, dumps(p.details), _context("prompts", p.id)),
                       dumps(p.history))
                      for p in prompts])

    def resolve_prompt(self, prompt_id: str, at: datetime) -> None:
        self.resolve_prompts([prompt_id], at)

    def resolve_prompts(self, prompt_ids: Sequence[str], at: datetime) -> None:
        resolved, at_text, open_ = str(PromptStatus.RESOLVED), ts(at), str(PromptStatus.OPEN)
        self._many("UPDATE prompts SET status = ?, resolved_at = ? WHERE id = ? AND status = ?",
                   [(resolved, at_text, prompt_id, open_) for prompt_id in prompt_ids])

    def set_recipient(self, prompt_id: str, recipient: str | None) -> None:
        self.set_recipients([(prompt_id, recipient)])

    def set_recipients(self, changes: Sequence[tuple[str, str | None]]) -> None:
        self._many("UPDATE prompts SET recipient = ? WHERE id = ?",
                   [(recipient, prompt_id) for prompt_id, recipient in changes])

    def set_histories(self, changes: Sequence[tuple[str, list[dict[str, Any]]]]) -> None:
        """Coordinator ids and times only (domain.prompts.reassigned): not sealed."""
        self._many("UPDATE prompts SET history = ? WHERE id = ?",
                   [(dumps(history), prompt_id) for prompt_id, history in changes])

    def set_details(self, prompt_id: str, details: dict[str, Any]) -> None:
        self.set_details_of([(prompt_id, details)])

    def set_details_of(self, changes: Sequence[tuple[str, dict[str, Any]]]) -> None:
        self._many("UPDATE prompts SET details = ? WHERE id = ?",
                   [(seal(self._cipher, dumps(details), _context("prompts", prompt_id)), prompt_id)
                    for prompt_id, details in changes])

    def prompt(self, prompt_id: str) -> Prompt | None:
        row = self._q(f"SELECT {', '.join(PROMPT_COLUMNS)} FROM prompts WHERE id = ?", (prompt_id,)).fetchone()
        return _prompt(row, self._cipher) if row else None

    def inbox(self, recipient: str, statuses: tuple[PromptStatus, ...], limit: int) -> list[Prompt]:
        marks = ", ".join("?" * len(statuses))
        rows = self._q(f"SELECT {', '.join(PROMPT_COLUMNS)} FROM prompts WHERE recipient = ? "
                       f"AND status IN ({marks}) ORDER BY due_at, id LIMIT ?",
                       (recipient, *map(str, statuses), limit))
        return [_prompt(r, self._cipher) for r in rows.fetchall()]

    def acknowledge(self, prompt_id: str, at: datetime) -> None:
        self._q("UPDATE prompts SET status = ?, acknowledged_at = ? WHERE id = ? AND status = ?",
                (str(PromptStatus.ACKNOWLEDGED), ts(at), prompt_id, str(PromptStatus.OPEN)))

    def to_escalate(self, now: datetime, limit: int) -> list[Prompt]:
        rows = self._q(f"SELECT {', '.join(PROMPT_COLUMNS)} FROM prompts WHERE status = ? "
                       "AND escalate_at IS NOT NULL AND escalate_at <= ? AND escalated_at IS NULL "
                       "ORDER BY escalate_at LIMIT ?", (str(PromptStatus.OPEN), ts(now), limit))
        return [_prompt(r, self._cipher) for r in rows.fetchall()]

    def mark_escalated(self, prompt_id: str, at: datetime) -> None:
        self._q("UPDATE prompts SET escalated_at = ? WHERE id = ?", (ts(at), prompt_id))

    def count_prompts(self) -> int:
        return int(self._q("SELECT COUNT(*) FROM prompts").fetchone()[0])

    # dead letters
    def dead_letter(self, source: str, part: int, position: int, event_id: str | None, reason: str,
                    payload: str, at: datetime) -> None:
        """Record an event that could not be processed. The same event dead-lettered again (a
        re-sent copy at a new position) updates the open dead letter instead of adding one."""
        if event_id is not None:
            row = self._q("SELECT id FROM dead_letters WHERE event_id = ? AND status = ?",
                          (event_id, str(DeadLetterStatus.OPEN))).fetchone()
            if row:
                self.dead_letter_failed(row[0], reason)
                return
        letter_id = uuid.uuid4().hex
        self._q("INSERT INTO dead_letters (id, source, part, position, event_id, reason, payload, created_at, "
                "status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (letter_id, source, part, position, event_id, reason[:500],
                 seal(self._cipher, payload, _context("dead_letters", letter_id)), ts(at), str(DeadLetterStatus.OPEN)))

    def dead_letters(self, limit: int = 100, status: DeadLetterStatus | None = DeadLetterStatus.OPEN
                     ) -> list[DeadLetter]:
        where, params = ("WHERE status = ? ", (str(status),)) if status else ("", ())
        rows = self._q(f"SELECT {', '.join(DEAD_LETTER_COLUMNS)} FROM dead_letters {where}"
                       "ORDER BY created_at, source, part, position LIMIT ?", (*params, limit))
        return [DeadLetter(source=s, part=p, position=pos, event_id=e, reason=r, created_at=c, status=st,
                           resolved_at=res) for s, p, pos, e, r, c, st, res in rows.fetchall()]

    def count_dead_letters(self, status: DeadLetterStatus = DeadLetterStatus.OPEN) -> int:
        return int(self._q("SELECT COUNT(*) FROM dead_letters WHERE status = ?", (str(status),)).fetchone()[0])

    def prompt_counts(self) -> list[tuple[str, str, bool, int]]:
        return [(rule, status, bool(escalated), int(n)) for rule, status, escalated, n in self._q(
            "SELECT rule, status, escalated_at IS NOT NULL, COUNT(*) FROM prompts "
            "GROUP BY rule, status, escalated_at IS NOT NULL").fetchall()]

    def delivery_counts(self) -> list[tuple[str, str, int]]:
        return [(channel, status, int(n)) for channel, status, n in self._q(
            "SELECT channel, status, COUNT(*) FROM deliveries GROUP BY channel, status").fetchall()]

    def open_dead_letters(self, limit: int) -> list[OpenDeadLetter]:
        """The open dead letters in position order, with their payload (decrypted)."""
        rows = self._q("SELECT id, source, part, position, event_id, payload FROM dead_letters "
                       "WHERE status = ? ORDER BY source, part, position, created_at LIMIT ?",
                       (str(DeadLetterStatus.OPEN), limit))
        return [OpenDeadLetter(id=i, source=s, part=p, position=pos, event_id=e,
                               payload=unseal(self._cipher, payload, _context("dead_letters", i)))
                for i, s, p, pos, e, payload in rows.fetchall()]

    def resolve_dead_letter(self, letter_id: str, at: datetime) -> None:
        self._q("UPDATE dead_letters SET status = ?, resolved_at = ? WHERE id = ?",
                (str(DeadLetterStatus.RESOLVED), ts(at), letter_id))

    def resolve_dead_letters_of_event(self, event_id: str, at: datetime) -> None:
        self._q("UPDATE dead_letters SET status = ?, resolved_at = ? WHERE event_id = ? AND status = ?",
                (str(DeadLetterStatus.RESOLVED), ts(at), event_id, str(DeadLetterStatus.OPEN)))

    def dead_letter_failed(self, letter_id: str, reason: str) -> None:
        self._q("UPDATE dead_letters SET reason = ? WHERE id = ?", (reason[:500], letter_id))

    # the store itself
    def meta(self, name: str) -> str | None:
        row = self._q("SELECT value FROM store_meta WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def set_meta(self, name: str, value: str) -> None:
        self._q("INSERT INTO store_meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING", (name, value))

    def columns(self, table: str) -> set[str]:
        if self._ph == "?":
            return {r[1] for r in self._q(f"PRAGMA table_info({table})").fetchall()}
        rows = self._q("SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                       "AND table_schema = current_schema()", (table,))
        return {r[0] for r in rows.fetchall()}

    def check_key(self) -> None:
        """The first store opened with a key records a sealed marker; a later start with another
        key (or none) fails here, at start-up, instead of at the first event."""
        marker = self.meta(KEY_CHECK)
        if marker is None:
            if self._cipher is not None:
                self.set_meta(KEY_CHECK, seal(self._cipher, KEY_CHECK, _context("store_meta", KEY_CHECK)))
            return
        if unseal(self._cipher, marker, _context("store_meta", KEY_CHECK)) != KEY_CHECK:
            raise StoreUnreadable("the store's key check does not match")

    # delivery outbox
    def enqueue_delivery(self, prompt_id: str, channel: str, kind: DeliveryKind, at: datetime) -> None:
        self.enqueue_deliveries([(prompt_id, channel, kind)], at)

    def enqueue_deliveries(self, deliveries: Sequence[tuple[str, str, DeliveryKind]], at: datetime) -> None:
        pending, at_text = str(DeliveryStatus.PENDING), ts(at)
        self._many("INSERT INTO deliveries (id, prompt_id, channel, kind, status, attempts, next_attempt_at, "
                   "created_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?) "
                   "ON CONFLICT (prompt_id, channel, kind) DO NOTHING",
                   [(uuid.uuid4().hex, prompt_id, channel, str(kind), pending, at_text, at_text)
                    for prompt_id, channel, kind in deliveries])

    def deliveries_due(self, now: datetime, limit: int) -> list[DueDelivery]:
        return self._due(now, limit, lock="")

    def _due(self, now: datetime, limit: int, lock: str) -> list[DueDelivery]:
        rows = self._q("SELECT id, prompt_id, channel, kind, attempts FROM deliveries WHERE status = ? "
                       f"AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?{lock}",
                       (str(DeliveryStatus.PENDING), ts(now), limit))
        return [DueDelivery(id=i, prompt_id=p, channel=c, kind=DeliveryKind(k), attempts=int(a))
                for i, p, c, k, a in rows.fetchall()]

    def claim_deliveries(self, now: datetime, limit: int, until: datetime) -> list[DueDelivery]:
        """deliveries_due, claimed: their due time moves to ``until`` in this transaction, so that
        another instance's dispatcher does not send them too (PostgreSQL: rows another
        transaction holds are skipped, FOR UPDATE SKIP LOCKED; SQLite: writers take turns,
        BEGIN IMMEDIATE). A claim not followed by delivery_done (the process died) lapses at
        ``until``: the delivery is tried again then, as after any failed attempt."""
        due = self._due(now, limit, lock=" FOR UPDATE SKIP LOCKED" if self._ph == "%s" else "")
        for delivery in due:
            self._q("UPDATE deliveries SET next_attempt_at = ? WHERE id = ?", (ts(until), delivery["id"]))
        return due

    def delivery_done(self, delivery_id: str, status: DeliveryStatus, attempts: int, error: str | None,
                      next_attempt: datetime | None) -> None:
        self._q("UPDATE deliveries SET status = ?, attempts = ?, last_error = ?, "
                "next_attempt_at = COALESCE(?, next_attempt_at) WHERE id = ?",
                (str(status), attempts, error, ts(next_attempt), delivery_id))

    def deliveries_of(self, prompt_id: str) -> list[DeliveryState]:
        rows = self._q("SELECT channel, kind, status, attempts, last_error FROM deliveries WHERE prompt_id = ? "
                       "ORDER BY created_at", (prompt_id,))
        return [DeliveryState(channel=c, kind=DeliveryKind(k), status=DeliveryStatus(s), attempts=int(a),
                              last_error=e) for c, k, s, a, e in rows.fetchall()]


class SQLiteStore:
    """``cipher=None`` stores plaintext (tests of old stores); bootstrap always gives one.
    ``private_dir``: make the folder 0700 even if it existed (the service's own folder); a
    folder the store creates is always 0700."""

    transient_errors: tuple[type[Exception], ...] = (sqlite3.OperationalError,)  # e.g. "database is locked"

    def __init__(self, path: Path, cipher: Cipher | None = None, *, private_dir: bool = False,
                 migrate: bool = True):
        self.path = private_sqlite(path, private_folder=private_dir)
        self.cipher = cipher
        self._write_lock = threading.Lock()  # one writer in this process; others wait in SQLite
        if migrate:  # under a file lock beside the database; one query when it is up to date
            from notification_service.adapters.migrations import migrate_database, sqlite_database

            migrate_database(sqlite_database(self.path))
        with self.transaction() as tx:
            tx.check_key()
        private_sqlite(path, private_folder=private_dir)  # the -wal and -shm files SQLite just made

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
                    yield Tx(db.cursor(), "?", self.cipher)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
        finally:
            db.close()

    def close(self) -> None:
        pass


class PostgresStore:
    def __init__(self, conninfo: str, pool_size: int = 8, cipher: Cipher | None = None, *, migrate: bool = True):
        import psycopg
        from psycopg_pool import ConnectionPool

        if migrate:  # under a PostgreSQL advisory lock; one query when it is up to date
            from notification_service.adapters.migrations import migrate_database, postgres_database

            migrate_database(postgres_database(conninfo))

        # lost connections, deadlocks, serialization failures: retried, never the event's fault
        self.transient_errors = (psycopg.OperationalError,)
        self.cipher = cipher
        # PostgreSQL down (issue 13): a caller waits at most 2 s for a connection (not 30 s), a
        # connection the server dropped is replaced before use (check), a lost one is tried
        # again for 2 s and then on demand (not with a back-off growing for 5 minutes), and a
        # server that does not answer is given up after 2 s (connect) or seconds (keepalives).
        self.pool = ConnectionPool(conninfo, min_size=1, max_size=pool_size, open=True, timeout=2.0,
                                   reconnect_timeout=2.0, check=ConnectionPool.check_connection,
                                   kwargs={"autocommit": False, **CONNECT_KWARGS})
        try:
            with self.transaction() as tx:
                tx._q("SELECT pg_advisory_xact_lock(8082)")  # instances starting at once: one records the key check
                tx.check_key()
        except BaseException:  # e.g. a store never migrated: no table
            self.pool.close()
            raise

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self.pool.connection() as db:
            with db.transaction():
                with db.cursor() as cur:
                    yield Tx(cur, "%s", self.cipher)

    def close(self) -> None:
        self.pool.close()
