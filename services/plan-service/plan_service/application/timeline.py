"""Timeline entries: each stored plan event with a short summary a person can read.

An entry is made from the event's projected details only (projection.py): a summary cannot
show what the reader's sections hide, because it never sees it. Summaries come from the event
type registry (domain/event_types.py) as translatable messages.
"""

from __future__ import annotations

from typing import Any

from plan_service.application import projection
from plan_service.domain import event_types
from plan_service.domain.plan import IndividualPlan, event_type

_META = {"originator_id", "originator_version", "timestamp", "recorded_by", "occurred_at",
         "originator_topic"}


class _Shown:
    """The projected details as attributes; a hidden field reads as None."""

    def __init__(self, details: dict[str, Any]):
        self.__dict__.update(details)

    def __getattr__(self, name: str) -> None:
        return None


def entry(event: IndividualPlan.Event, sections: frozenset[str] = projection.FULL) -> dict[str, Any]:
    """One timeline entry as these sections show it (the event type must be visible to them:
    projection.event_visible)."""
    name = event_type(event)
    details = projection.event_details(
        name, {k: v for k, v in event.__dict__.items() if k not in _META}, sections)
    item = {
        "version": event.originator_version,
        "type": name,
        "summary": event_types.BY_NAME[name].summary(_Shown(details)).format(),
        "occurred_at": event.occurred_at,
        "recorded_at": event.timestamp,
        "details": details,
    }
    if projection.shows_recorded_by(sections):
        item["recorded_by"] = event.recorded_by
    return item
