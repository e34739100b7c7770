"""PlanView: what notification-service knows of one plan, built only from integration events.

It never reads plan-service's database. Events arrive in order per plan; one whose
``plan_version`` is not newer than the view's is a redelivery and changes nothing.

An event that cannot be applied must not stop its plan (every later event would be "out of
order" and the coordinator would silently get nothing more): the view moves past it
(``skip``) and remembers the versions it skipped. Such a version can still be applied later
(``apply_late``: a fixed handler, ``dead-letters retry``, a re-sent copy). Because a late event
is older than what the view already shows, each thing it sets (the coordinator, a meeting's
status, a consent...) remembers the version that set it (``set_by``), and an older event does
not override a newer one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from careplan_shared.events import IntegrationEvent
from careplan_shared.vocabulary import AgeBand, ParticipantKind, ServiceLevel


class MeetingStatus(StrEnum):
    """A triangle meeting's status in the view (stored in the view's JSON as these strings)."""

    REQUESTED = "requested"
    SCHEDULED = "scheduled"
    HELD = "held"
    MISSED = "missed"


class OutOfOrder(ValueError):
    """An event skipped versions, or refers to something the view has never seen."""


@dataclass
class PlanView:
    plan_id: str
    version: int = 0
    opened_at: datetime | None = None
    age_band: str | None = None
    birth_date: date | None = None
    service_levels: list[str] = field(default_factory=list)
    both_levels_since: datetime | None = None  # when municipal and specialist both took part
    coordinator_id: str | None = None
    # id -> {"scheduled_for": datetime, "held_at": datetime | None}
    evaluations: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_evaluation_at: datetime | None = None
    # id -> {"status": MeetingStatus, "scheduled_for", "place", "transport", "companion",
    #        "no_show_strategy", "times_missed", "missed_at"}
    meetings: dict[str, dict[str, Any]] = field(default_factory=dict)
    # relative id -> {"valid_until": datetime | None, "withdrawn": bool}
    consents: dict[str, dict[str, Any]] = field(default_factory=dict)
    # id -> {"topic", "form", "given_at"}
    information: dict[str, dict[str, Any]] = field(default_factory=dict)
    # professional participants' service levels, by participant id
    professionals: dict[str, str] = field(default_factory=dict)
    closed: bool = False
    # when plan-service last recorded an event of this plan (the latest recorded_at seen; a
    # late or redelivered event never moves it back). None: no event since this field came.
    last_event_at: datetime | None = None
    # versions moved past without being applied: [[first, last], ...], sorted, not overlapping
    skipped: list[list[int]] = field(default_factory=list)
    # what set each order-sensitive thing: "coordinator", "meeting:<id>:status", ... -> version
    set_by: dict[str, int] = field(default_factory=dict)
    # the earliest moment each service level took part (late events can only move it earlier)
    level_since: dict[str, datetime] = field(default_factory=dict)

    # -- persistence as JSON ------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return _encode(self.__dict__)  # _encode builds new containers: no copy needed first

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PlanView:
        view = cls(**_decode(data))
        for meeting in view.meetings.values():
            meeting["status"] = MeetingStatus(meeting["status"])
        return view

    def age_on(self, day: date) -> tuple[int, int] | None:
        """The patient's possible age range on a day (from birth date, else the age band)."""
        if self.birth_date:
            years = day.year - self.birth_date.year - (
                (day.month, day.day) < (self.birth_date.month, self.birth_date.day))
            return years, years
        if self.age_band is None:  # no band given
            return None
        try:
            return AgeBand(self.age_band).years
        except ValueError:  # no band given (or one this version does not know)
            return None

    def is_skipped(self, version: int) -> bool:
        return any(first <= version <= last for first, last in self.skipped)

    def reflects(self, version: int) -> bool:
        """The event of this version is in the view (applied, or one this service has no use for)."""
        return version <= self.version and not self.is_skipped(version)


def _escape(key: Any) -> Any:
    # Keys are ids from events: "$dt" as a meeting or participant id must not read back as a date.
    return "$" + key if isinstance(key, str) and key.startswith("$") else key


def _unescape(key: Any) -> Any:
    return key[1:] if isinstance(key, str) and key.startswith("$$") else key


# Values JSON holds as they are; the exact types take the fast way through _encode and _decode,
# anything else (subclasses such as MeetingStatus, dict or list subclasses) the general one.
_AS_THEY_ARE = frozenset({str, int, bool, float, type(None)})


def _encode(value: Any) -> Any:
    kind = type(value)
    if kind in _AS_THEY_ARE:
        return value
    if kind is dict:  # (values JSON holds as they are stay in the loop: no call for each)
        return {(("$" + k if k[:1] == "$" else k) if type(k) is str else _escape(k)):
                (v if type(v) in _AS_THEY_ARE else _encode(v)) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _AS_THEY_ARE else _encode(v) for v in value]
    if kind is datetime:
        return {"$dt": value.isoformat()}
    if kind is date:
        return {"$d": value.isoformat()}
    return _encode_any(value)


def _encode_any(value: Any) -> Any:
    if isinstance(value, dict):
        return {_escape(k): _encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, date):
        return {"$d": value.isoformat()}
    return value


def _decode(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        if len(value) == 1:  # a tagged date or time, if it is one
            if "$dt" in value and isinstance(value["$dt"], str):
                return datetime.fromisoformat(value["$dt"])
            if "$d" in value and isinstance(value["$d"], str):
                return date.fromisoformat(value["$d"])
        return {((k[1:] if k[:2] == "$$" else k) if type(k) is str else _unescape(k)):
                (v if type(v) in _AS_THEY_ARE else _decode(v)) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _AS_THEY_ARE else _decode(v) for v in value]
    if kind in _AS_THEY_ARE:
        return value
    return _decode_any(value)


def _decode_any(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$dt"} and isinstance(value["$dt"], str):
            return datetime.fromisoformat(value["$dt"])
        if set(value) == {"$d"} and isinstance(value["$d"], str):
            return date.fromisoformat(value["$d"])
        return {_unescape(k): _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def is_redelivery(view: PlanView, event: IntegrationEvent) -> bool:
    return view.reflects(event.plan_version)


def is_late(view: PlanView, event: IntegrationEvent) -> bool:
    """An event the view moved past without applying it (see ``skip``)."""
    return event.plan_version <= view.version and view.is_skipped(event.plan_version)


def apply(view: PlanView, event: IntegrationEvent) -> PlanView:
    """Fold one new event into the view (mutates and returns it). If it raises, the view may be
    half-changed: the caller restores its copy."""
    if event.plan_version != view.version + 1:
        raise OutOfOrder(f"plan version {event.plan_version} after {view.version}")
    _handle(view, event)
    _recorded(view, event)
    view.version = event.plan_version
    return view


def apply_late(view: PlanView, event: IntegrationEvent) -> PlanView:
    """Fold in an event the version check would refuse: one the view skipped, or one beyond a
    gap (its missing versions are then recorded as skipped). Never one the view reflects."""
    version = event.plan_version
    if view.reflects(version):
        raise ValueError(f"plan version {version} is already in the view")
    _handle(view, event)
    _recorded(view, event)
    if version > view.version:
        _add_skipped(view, view.version + 1, version - 1)
        view.version = version
    else:
        _remove_skipped(view, version)
    return view


def _recorded(view: PlanView, event: IntegrationEvent) -> None:
    """Every event is activity in the plan, whatever its type: the latest moment one was
    recorded is kept (events applied late, or out of order, never move it back)."""
    at = event.recorded_at
    if view.last_event_at is None or at > view.last_event_at:
        view.last_event_at = at


def skip(view: PlanView, version: int) -> PlanView:
    """Move past an event that cannot be applied (and past any gap before it), remembering them."""
    if version > view.version:
        _add_skipped(view, view.version + 1, version)
        view.version = version
    return view


def _add_skipped(view: PlanView, first: int, last: int) -> None:
    if first > last:
        return
    ranges = sorted([*view.skipped, [first, last]])
    merged: list[list[int]] = []
    for lo, hi in ranges:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    view.skipped = merged


def _remove_skipped(view: PlanView, version: int) -> None:
    kept: list[list[int]] = []
    for lo, hi in view.skipped:
        if lo <= version <= hi:
            kept += [r for r in ([lo, version - 1], [version + 1, hi]) if r[0] <= r[1]]
        else:
            kept.append([lo, hi])
    view.skipped = kept


def _handle(view: PlanView, event: IntegrationEvent) -> None:
    handler = _HANDLERS.get(event.event_type)
    if handler is not None:  # types this service has no use for still advance the version
        handler(view, event.payload, event)


def _claim(view: PlanView, key: str, e: IntegrationEvent) -> bool:
    """May this event set this thing? Not if a newer event already did (a late event)."""
    if view.set_by.get(key, 0) > e.plan_version:
        return False
    view.set_by[key] = e.plan_version
    return True


# Enum members and the levels read once (a member looked up on its class is slow in Python 3.11).
_REQUESTED, _SCHEDULED, _HELD, _MISSED = (MeetingStatus.REQUESTED, MeetingStatus.SCHEDULED, MeetingStatus.HELD,
                                          MeetingStatus.MISSED)
_PROFESSIONAL = ParticipantKind.PROFESSIONAL
_LEVELS_IN_ORDER = tuple(ServiceLevel)
_LEVELS = frozenset(_LEVELS_IN_ORDER)


def _involve(view: PlanView, level: str | None, at: datetime) -> None:
    if not level:
        return
    since = view.level_since.get(level)
    if since is None or at < since:
        view.level_since[level] = at
    if level not in view.service_levels:
        view.service_levels.append(level)
    if _LEVELS.issubset(view.service_levels):
        known = [view.level_since.get(name) for name in _LEVELS_IN_ORDER]
        if all(known):  # both took part from the later of their first moments
            view.both_levels_since = max(known)  # type: ignore[type-var]
        elif view.both_levels_since is None:  # a view from before level_since was kept
            view.both_levels_since = at


def _opened(view: PlanView, p: dict[str, Any], e: IntegrationEvent) -> None:
    view.opened_at = e.occurred_at
    view.age_band = p.get("age_band")
    view.birth_date = p.get("birth_date")
    _involve(view, p["service_level"], e.occurred_at)


def _coordinator(view: PlanView, p: dict[str, Any], e: IntegrationEvent) -> None:
    coordinator_id = p["coordinator_id"]
    if _claim(view, "coordinator", e):
        view.coordinator_id = coordinator_id
    _involve(view, p.get("service_level"), e.occurred_at)


def _participant_added(view: PlanView, p: dict[str, Any], e: IntegrationEvent) -> None:
    participant_id = p["participant_id"]
    if p["kind"] == _PROFESSIONAL and p.get("service_level"):
        if _claim(view, f"participant:{participant_id}", e):
            view.professionals[participant_id] = p["service_level"]
        _involve(view, p["service_level"], e.occurred_at)


def _participant_removed(view: PlanView, p: dict[str, Any], e: IntegrationEvent) -> None:
    participant_id = p["participant_id"]
    if _claim(view, f"participant:{participant_id}", e):
        view.professionals.pop(participant_id, None)
    # Claimed even with no consent in the view yet: a consent given before this removal and
    # applied late (a retried dead letter) must not come back to life.
    if _claim(view, f"consent:{participant_id}", e):
        consent = view.consents.get(participant_id)
        if consent:
            consent["withdrawn"] = True


def _consent_given(view: PlanView, p: dict[str, Any], e: IntegrationEvent) -> None:
    consent = {"valid_until": p.get("valid_until"), "withdrawn": False}
    if _claim(view, f"consent:{p['relative_id']}", e):
        view.consents[p["relative_id"]] = consent


def _consent_withdrawn(view: PlanView, p: dict[str, Any], e: IntegrationEvent) -> None:
    if p["relative_id"] not in view.consents:
        raise OutOfOrder(f"withdrawal of a consent never seen ({p['relative_id']})")
    if _claim(view, f"consent:{p['relative_id']}", e):
        view.consents[p["relative_id"]]["withdrawn"] = True


def _evaluation_scheduled(view: PlanView, p: dict[str, Any], e: IntegrationEvent) -> None:
    evaluation = {"scheduled_for": p["scheduled_for"], "held_at": None}
    if _claim(view, f"evaluation:{p['evaluation_id']}", e):
        view.evaluations[p["evaluation_id"]] = evaluation


def _evaluation_held(view: PlanView, p: dict[str, Any], e: IntegrationEvent) -> None:
    evaluation = view.evaluations.get(p["evaluation_id"])
    if evaluation is None:
        raise OutOfOrder(f"evaluation {p['evaluation_id']} held but never scheduled")
    if _claim(view, f"evaluation:{p['evaluation_id']}", e):
        evaluation["held_at"] = e.occurred_at
    if view.last_evaluation_at is None or e.occurred_at > view.last_evaluation_at:
        view.last_evaluation_at = e.occurred_at


def _meeting(view: PlanView, meeting_id: str) -> dict[str, Any]:
    return view.meetings.setdefault(meeting_id, {
        "status": _REQUESTED, "scheduled_for": None, "place": None, "transport": None,
        "companion": None, "no_show_strategy": None, "times_missed": 0, "missed_at": None})


def _meeting_requested(view: PlanView, p: dict[str, Any], e: IntegrationEvent) -> None:
    _meeting(view, p["meeting_id"])


def _meeting_scheduled(view: PlanView, p: dict[str, Any], e: IntegrationEvent) -> None:
    # The arrangement (place, strategy...) and the status are claimed apart: a late scheduling
    # still fills in the strategy of a meeting that a newer event already marked missed.
    details = dict(scheduled_for=p["scheduled_for"], place=p["place"], transport=p.get("transport"),
                   companion=p.get("companion"), no_show_strategy=p["no_show_strategy"])
    meeting = _meeting(view, p["meeting_id"])
    if _claim(view, f"meeting:{p['meeting_id']}:details", e):
        meeting.update(details)
    if _claim(view, f"meeting:{p['meeting_id']}:status", e):
        meeting["status"] = _SCHEDULED


def _meeting_held(view: PlanView, p: dict[str, Any], e: IntegrationEvent) -> None:
    if p["meeting_id"] not in view.meetings:
        raise OutOfOrder(f"triangle meeting {p['meeting_id']} held but never seen")
    if _claim(view, f"meeting:{p['meeting_id']}:status", e):
        view.meetings[p["meeting_id"]]["status"] = _HELD


def _meeting_missed(view: PlanView, p: dict[str, Any], e: IntegrationEvent) -> None:
    meeting = view.meetings.get(p["meeting_id"])
    if meeting is None:
        raise OutOfOrder(f"triangle meeting {p['meeting_id']} missed but never seen")
    if _claim(view, f"meeting:{p['meeting_id']}:status", e):  # a newer status wins over a late miss
        meeting["status"] = _MISSED
        meeting["times_missed"] += 1
        meeting["missed_at"] = e.occurred_at


def _information(view: PlanView, p: dict[str, Any], e: IntegrationEvent) -> None:
    view.information[p["information_id"]] = {"topic": p["topic"], "form": p["form"],
                                             "given_at": e.occurred_at}


def _closed(view: PlanView, p: dict[str, Any], e: IntegrationEvent) -> None:
    view.closed = True


# Plan event types this service has no use for (their content stays in plan-service); they
# still advance the view's version. Every other registered type has a handler below.
UNUSED_EVENT_TYPES = frozenset({"WhatMattersRecorded", "GoalSet", "GoalRevised", "GoalAchieved", "GoalAbandoned"})

_HANDLERS = {
    "PlanOpened": _opened,
    "CoordinatorAssigned": _coordinator,
    "ParticipantAdded": _participant_added,
    "ParticipantRemoved": _participant_removed,
    "RelativeConsentGiven": _consent_given,
    "RelativeConsentWithdrawn": _consent_withdrawn,
    "EvaluationScheduled": _evaluation_scheduled,
    "EvaluationHeld": _evaluation_held,
    "TriangleMeetingRequested": _meeting_requested,
    "TriangleMeetingScheduled": _meeting_scheduled,
    "TriangleMeetingHeld": _meeting_held,
    "TriangleMeetingMissed": _meeting_missed,
    "InformationGiven": _information,
    "PlanClosed": _closed,
}
