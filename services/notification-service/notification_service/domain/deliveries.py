"""The delivery outbox's vocabulary: what a channel is given (``Message``), how an attempt fails
(``DeliveryError``), when to try again (``backoff``), and the states of a delivery.

Privacy: a message carries only a link to the prompt and the reason category, never plan
content; the coordinator logs in to see the details.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TypedDict


class DeliveryKind(StrEnum):
    NEW = "new"  # a prompt was created
    ESCALATED = "escalated"  # a prompt was not acknowledged in time


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # to be (re)tried at its next attempt time
    SENT = "sent"
    FAILED = "failed"  # refused for good, or out of attempts
    SKIPPED = "skipped"  # no longer matters (the prompt was acknowledged or resolved), or no channel


class DueDelivery(TypedDict):
    id: str
    prompt_id: str
    channel: str
    kind: DeliveryKind
    attempts: int


class DeliveryState(TypedDict):
    channel: str
    kind: DeliveryKind
    status: DeliveryStatus
    attempts: int
    last_error: str | None


@dataclass(frozen=True)
class Message:
    delivery_id: str  # unique per delivery; used as idempotency key
    prompt_id: str
    plan_id: str
    recipient: str  # coordinator id
    reason: str  # category code, e.g. "no_show_follow_up", "evaluation_due"
    due_at: datetime  # aware
    link: str  # URL to the prompt in the inbox
    escalated: bool = False


class DeliveryError(Exception):
    """A failed attempt. ``retryable``: a later attempt may succeed. ``retry_after``: seconds
    the receiver asked us to wait (Retry-After), if it said."""

    def __init__(self, message: str, retryable: bool, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


def backoff(attempt: int, base: float = 2.0, cap: float = 3600.0, jitter: float = 0.1,
            rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1``: base * 2**(attempt-1), at most ``cap``,
    then spread by +/- ``jitter`` (a fraction) and kept within [0, cap]. Attempt 1 -> ~base."""
    exponent = max(attempt, 1) - 1
    delay = cap if exponent >= 63 else min(cap, base * (2 ** exponent))
    if jitter:
        delay *= 1 + (rng or random).uniform(-jitter, jitter)
    return max(0.0, min(cap, delay))
