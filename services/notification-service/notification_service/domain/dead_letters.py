"""Dead letters: events that could not be processed, kept (encrypted) until a retry applies them."""

from __future__ import annotations

from enum import StrEnum
from typing import TypedDict


class DeadLetterStatus(StrEnum):
    OPEN = "open"  # the event is not in its plan's view
    RESOLVED = "resolved"  # applied later (a retry, a re-sent copy)


class DeadLetter(TypedDict):
    """One dead letter as listed (no payload). Times are the store's UTC ISO-8601 text and the
    status its stored text (a ``DeadLetterStatus`` value): `dead-letters list` prints the row."""

    source: str
    part: int
    position: int
    event_id: str | None
    reason: str
    created_at: str
    status: str
    resolved_at: str | None


class OpenDeadLetter(TypedDict):
    """An open dead letter to retry, with its payload (decrypted)."""

    id: str
    source: str
    part: int
    position: int
    event_id: str | None
    payload: str
