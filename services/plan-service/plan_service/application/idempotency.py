"""Idempotency-Key support, stored in the event store itself.

A first request with a key saves, in the same atomic write as the plan's events, a small
aggregate whose id is derived from (caller, key). A replay finds it and gets the first
outcome back; two racing first requests collide on that id, so exactly one is stored.
The record holds ids and versions only, never plan content.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from eventsourcing.domain import Aggregate

NAMESPACE = uuid.UUID("0c0f4f4e-7f8e-4a4b-8f62-0d7c4b9e2a55")


class IdempotencyRecord(Aggregate):
    TOPIC = "careplan.IdempotencyRecord"

    class Created(Aggregate.Created):
        TOPIC = "careplan.IdempotencyRecord.Created"
        fingerprint: str
        outcome: dict[str, Any]

    def __init__(self, fingerprint: str, outcome: dict[str, Any]):
        self.fingerprint = fingerprint
        self.outcome = outcome

    @staticmethod
    def id_for(caller: str, key: str) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, f"{caller}\n{key}")

    @classmethod
    def create(cls, caller: str, key: str, fingerprint: str, outcome: dict[str, Any]) -> IdempotencyRecord:
        return cls._create(cls.Created, id=cls.id_for(caller, key), fingerprint=fingerprint, outcome=outcome)


def fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(b"\n".join((method.encode(), path.encode(), body))).hexdigest()
