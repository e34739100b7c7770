"""Which event store the eventsourcing library uses: chosen by configuration, not by code."""

from __future__ import annotations

import logging
import sqlite3

from eventsourcing.cryptography import AESCipher

from careplan_shared.files import load_or_create_secret, private_sqlite
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
