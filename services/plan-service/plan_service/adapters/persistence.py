"""Which event store the eventsourcing library uses: chosen by configuration, not by code."""

from __future__ import annotations

from eventsourcing.cryptography import AESCipher

from plan_service.config import Config

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


def eventsourcing_env(config: Config) -> dict[str, str]:
    env: dict[str, str] = {}
    if config.aggregate_cache_size:
        env["AGGREGATE_CACHE_MAXSIZE"] = str(config.aggregate_cache_size)
    if config.persistence == "memory":
        env["PERSISTENCE_MODULE"] = "eventsourcing.popo"
    elif config.persistence == "sqlite":
        config.sqlite_file.parent.mkdir(parents=True, exist_ok=True)
        env["PERSISTENCE_MODULE"] = "eventsourcing.sqlite"
        env["SQLITE_DBNAME"] = str(config.sqlite_file)
        env["SQLITE_LOCK_TIMEOUT"] = "10"
    elif config.persistence == "postgres":
        env["PERSISTENCE_MODULE"] = "eventsourcing.postgres"
        env.update(config.postgres)
    if config.encryption_key:
        # The library encrypts each stored event's and snapshot's state (AES-GCM); ids,
        # versions, topics and the notification log's order stay in the clear.
        env["CIPHER_TOPIC"] = CIPHER_TOPIC
        env["CIPHER_KEY"] = config.encryption_key
    return env
