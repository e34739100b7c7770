"""Prompts: what the coordinator is asked to do, for which plan, by when. The vocabularies
(``Reason``, ``PromptStatus``) are written here once; as ``StrEnum`` members they are stored and
shown as the same strings as before."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Reason(StrEnum):
    """Why a prompt exists: the rule that wants it, and the reason category the coordinator sees."""

    EVALUATION_DUE = "evaluation_due"
    EVALUATION_SUGGESTED = "evaluation_suggested"
    TRIANGLE_MEETING_SUGGESTED = "triangle_meeting_suggested"
    NO_SHOW_FOLLOW_UP = "no_show_follow_up"
    WRITTEN_INFORMATION_DUE = "written_information_due"
    CONSENT_EXPIRING = "consent_expiring"
    PLAN_INACTIVE = "plan_inactive"


class PromptStatus(StrEnum):
    OPEN = "open"  # waiting for the coordinator
    ACKNOWLEDGED = "acknowledged"  # the coordinator has seen it and takes it from here
    RESOLVED = "resolved"  # the plan shows it was dealt with (it resolved itself)


@dataclass
class Prompt:
    id: str
    plan_id: str
    rule: Reason
    subject: str  # what in the plan it is about; (plan_id, rule, subject) is the prompt's key
    recipient: str | None  # the coordinator
    status: PromptStatus
    due_at: datetime
    escalate_at: datetime | None
    escalated_at: datetime | None
    created_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    details: dict[str, Any]
    # What happened to the prompt besides its own times (created, escalated, acknowledged,
    # resolved): entries of coordinator ids and times only, oldest first; see ``reassigned``.
    history: list[dict[str, Any]] = field(default_factory=list)


REASSIGNED = "reassigned"


def reassigned(at: datetime, old: str | None, new: str | None) -> dict[str, Any]:
    """The history entry of a prompt moved to another recipient (the plan's new coordinator):
    ``{"kind": "reassigned", "at": ISO time, "from": old recipient, "to": new recipient}``;
    ``from``/``to`` are recipient ids (None: nobody), never plan content."""
    return {"kind": REASSIGNED, "at": at.isoformat(), "from": old, "to": new}
