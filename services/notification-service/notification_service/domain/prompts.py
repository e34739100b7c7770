"""Prompts: what the coordinator is asked to do, for which plan, by when. The vocabularies
(``Reason``, ``PromptStatus``) are written here once; as ``StrEnum`` members they are stored and
shown as the same strings as before."""

from __future__ import annotations

from dataclasses import dataclass
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
