"""Which event store the eventsourcing library uses: chosen by configuration, not by code."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from typing import Any

from eventsourcing.cryptography import AESCipher

from careplan_shared.files import load_or_create_secret, private_sqlite
from careplan_shared.postgres import CONNECT_KWARGS
from plan_service.config import Config, validate_encryption_key

log = logging.getLogger("careplan.persistence")

# The library's AES-GCM cipher on the pinned `cryptography` package (eventsourcing.cipher would
# need pycryptodome, not installed; both write the same layout: nonce, tag, ciphertext).
CIPHER_TOPIC = "plan_service.adapters.persistence:PlanCipher"


class DecryptionFailed(ValueError):
    pass


class PlanCipher(AESCipher):
    """eventsourcing.cryptography.AESCipher, with an error that says what went wrong."""

    def decrypt(self, ciphertext: bytes) -> bytes:
        try:
            return super().decrypt(ciphertext)
        except ValueError:
            raise DecryptionFailed(
                "cannot decrypt a stored event or snapshot: PLAN_SERVICE_ENCRYPTION_KEY is not the key "
                "it was written with, or the store holds unencrypted or damaged data") from None


def store_env(config: Config) -> dict[str, str]:
    """Which store the library opens (no cipher, no cache). The library's tables are made by
    `plan-service migrate` (adapters/migrations), never by the service: CREATE_TABLE is off."""
    if config.persistence == "memory":
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    if config.persistence == "sqlite":
        private_sqlite(config.sqlite_file)  # folder 0700, files 0600
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(config.sqlite_file),
                "SQLITE_LOCK_TIMEOUT": "10", "CREATE_TABLE": "n"}
    return {"PERSISTENCE_MODULE": "eventsourcing.postgres", **config.postgres, "CREATE_TABLE": "n"}


def eventsourcing_env(config: Config) -> dict[str, str]:
    env: dict[str, str] = {}
    if config.aggregate_cache_size:
        env["AGGREGATE_CACHE_MAXSIZE"] = str(config.aggregate_cache_size)
    env.update(store_env(config))
    key = config.encryption_key or embedded_key(config)
    if key:
        # The library encrypts each stored event's and snapshot's state (AES-GCM); ids,
        # versions, topics and the notification log's order stay in the clear.
        env["CIPHER_TOPIC"] = CIPHER_TOPIC
        env["CIPHER_KEY"] = key
    return env


def embedded_key(config: Config) -> str | None:
    """The embedded default (SQLite) is encrypted at rest even without a configured key: a key
    is made on first run in a 0600 file beside the store, like the dev signing key. Keep that
    file with the store (README). A store that already holds events written without a key
    stays as it is, readable: no key is made for it, and a warning says so."""
    if config.encryption != "auto" or config.persistence != "sqlite":
        return None
    path = config.embedded_key_file
    if not path.exists() and _holds_events(config.sqlite_file):
        log.warning("the event store was written without encryption; it stays unencrypted "
                    "(README: encryption at rest)")
        return None
    return validate_encryption_key(load_or_create_secret(path, lambda: AESCipher.create_key(32)),
                                   "the embedded encryption key file")


def _holds_events(path) -> bool:
    if not path.exists() or path.stat().st_size == 0:
        return False
    try:
        with sqlite3.connect(path) as db:
            return db.execute("SELECT 1 FROM stored_events LIMIT 1").fetchone() is not None
    except sqlite3.Error:  # no such table yet
        return False


# -- failing fast when PostgreSQL is down (issue 13) ------------------------------------------
# libpq settings for every connection of the event store's pool: both services' CONNECT_KWARGS
# (careplan_shared/postgres.py), unacknowledged data given up on after 5 s (tcp_user_timeout);
# no statement runs longer than STATEMENT_TIMEOUT_MS (a write holds the table lock: past that,
# something is wrong).
STATEMENT_TIMEOUT_MS = 5000
CONNECTION_KWARGS: dict[str, Any] = {**CONNECT_KWARGS, "tcp_user_timeout": 5000}
# psycopg-pool re-tries a lost connection with a back-off that doubles from 1 s for up to
# `reconnect_timeout` (default 5 min: after a 45 s outage its next attempt could be 30 s away).
# With 2 s it gives up quickly, and the next request that wants a connection starts a fresh
# attempt at once: reconnection follows demand, so writes work again as soon as the database does.
RECONNECT_TIMEOUT = 2.0
FAIL_FAST_SECONDS = 0.5


def postgres_connection_options(schema: str = "") -> str:
    """libpq ``options``: the statement timeout (and a search path, for our own tables)."""
    return f"-c statement_timeout={STATEMENT_TIMEOUT_MS}" + (f" -c search_path={schema}" if schema else "")


class StoreUnavailable(Exception):
    """The event store's database is not answering just now (the API answers 503). Not a
    psycopg error on purpose: the library neither wraps nor retries it (below)."""


class FailFast:
    """Around the pool's ``getconn``: once getting a connection failed (the pool's own timeout:
    POSTGRES_CONNECT_TIMEOUT), every call of the next ``hold`` seconds fails at once with
    StoreUnavailable instead of waiting that timeout again. Two things multiplied that wait:
    eventsourcing 9.5.6 retries every recorder call on OperationalError 10 times, 0.2 s apart
    (@retry in eventsourcing/postgres.py: 10 pool timeouts per call), and the group committer
    retries a failed batch's writes one by one (the last of eight waits for all of them). After
    ``hold`` the next call tries again, and a success closes it.

    A failure also has the pool check all its idle connections at once (in a thread): the ones
    the server dropped are replaced now. Left to the checks before use, a request meets them one
    or two at a time, with a second's pause after each failed check (psycopg-pool's back-off),
    and the pool needed seconds to get rid of them after the database was back."""

    def __init__(self, pool: Any, hold: float = FAIL_FAST_SECONDS):
        self._pool, self._getconn, self.hold = pool, pool.getconn, hold
        self._failed_at: float | None = None
        self._lock = threading.Lock()
        self._checking = False
        self.fast_failures = 0

    def __call__(self, timeout: float | None = None) -> Any:
        from psycopg_pool import PoolTimeout

        failed_at = self._failed_at
        if failed_at is not None and time.monotonic() - failed_at < self.hold:
            with self._lock:
                self.fast_failures += 1
            raise StoreUnavailable("the database did not give a connection just now")
        try:
            conn = self._getconn(timeout)
        except PoolTimeout:
            self._failed_at = time.monotonic()
            self._check_idle_connections()
            raise
        self._failed_at = None
        return conn

    def _check_idle_connections(self) -> None:
        with self._lock:
            if self._checking:
                return
            self._checking = True

        def check() -> None:
            try:
                self._pool.check()
            except Exception as e:  # noqa: BLE001 - best effort: the checks before use remain
                log.info("checking the pool's connections failed", extra={"error_type": type(e).__name__})
            finally:
                self._checking = False

        threading.Thread(target=check, name="pool-check", daemon=True).start()

    @property
    def failing(self) -> bool:
        return self._failed_at is not None


def harden_postgres_pool(application: Any) -> FailFast | None:
    """Make the eventsourcing library's PostgreSQL pool fail fast and recover fast (above); its
    own settings (POSTGRES_CONNECT_TIMEOUT: the pool's wait, POSTGRES_PRE_PING: a checked
    connection) come from config.postgres_env. None for other stores."""
    from eventsourcing.postgres import PostgresDatastore

    datastore = getattr(application.factory, "datastore", None)
    if not isinstance(datastore, PostgresDatastore):
        return None
    pool = datastore.pool
    if isinstance(pool.kwargs, dict):
        pool.kwargs.update(CONNECTION_KWARGS, options=postgres_connection_options())
    pool.reconnect_timeout = RECONNECT_TIMEOUT
    guard = FailFast(pool)
    pool.getconn = guard  # type: ignore[method-assign]
    return guard
