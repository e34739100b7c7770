"""PlanView: what notification-service knows of one plan, built only from integration events.

It never reads plan-service's database. Events arrive in order per plan; one whose
``plan_version`` is not newer than the view's is a redelivery and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from careplan_shared.events import IntegrationEvent


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
    # id -> {"status", "scheduled_for", "place", "transport", "companion", "no_show_strategy",
    #        "times_missed", "missed_at"}
    meetings: dict[str, dict[str, Any]] = field(default_factory=dict)
    # relative id -> {"valid_until": datetime | None, "withdrawn": bool}
    consents: dict[str, dict[str, Any]] = field(default_factory=dict)
    # id -> {"topic", "form", "given_at"}
    information: dict[str, dict[str, Any]] = field(default_factory=dict)
    # professional participants' service levels, by participant id
    professionals: dict[str, str] = field(default_factory=dict)
    closed: bool = False

    # -- persistence as JSON ------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return _encode(self.__dict__)  # _encode builds new containers: no copy needed first

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PlanView:
        return cls(**_decode(data))

    def age_on(self, day: date) -> tuple[int, int] | None:
        """The patient's possible age range on a day (from birth date, else the age band)."""
        if self.birth_date:
            years = day.year - self.birth_date.year - (
                (day.month, day.day) < (self.birth_date.month, self.birth_date.day))
            return years, years
        bands = {"0-14": (0, 14), "15-17": (15, 17), "18-25": (18, 25), "26-64": (26, 64), "65+": (65, 200)}
        return bands.get(self.age_band or "")


def _encode(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, date):
        return {"$d": value.isoformat()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$dt"}:
            return datetime.fromisoformat(value["$dt"])
        if set(value) == {"$d"}:
            return date.fromisoformat(value["$d"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def is_redelivery(view: PlanView, event: IntegrationEvent) -> bool:
    return event.plan_version <= view.version


def apply(view: PlanView, event: IntegrationEvent) -> PlanView:
    """Fold one new event into the view (mutates and returns it)."""
    if event.plan_version != view.version + 1:
        raise OutOfOrder(f"plan version {event.plan_version} after {view.version}")
    handler = _HANDLERS.get(event.event_type)
    if handler is not None:  # types this service has no use for still advance the version
        handler(view, event.payload, event)
    view.version = event.plan_version
    return view


def _involve(view: PlanView, level: str | None, at: datetime) -> None:
    if level and level not in view.service_levels:
        view.service_levels.append(level)
        if {"municipal", "specialist"} <= set(view.service_levels) and view.both_levels_since is None:
            view.both_levels_since = at


def _opened(view: PlanView, p: dict[str, Any], e: IntegrationEvent) -> None:
    view.opened_at = e.occurred_at
    view.age_band = p.get("age_band")
    view.birth_date = p.get("birth_date")
    _involve(view, p["service_level"], e.occurred_at)


def _coordinator(view: PlanView, p: dict[str, Any], e: IntegrationEvent) -> None:
    view.coordinator_id = p["coordinator_id"]
    _involve(view, p.get("service_level"), e.occurred_at)


def _participant_added(view: PlanView, p: dict[str, Any], e: IntegrationEvent) -> None:
    if p["kind"] == "professional" and p.get("service_level"):
        view.professionals[p["participant_id"]] = p["service_level"]
        _involve(view, p["service_level"], e.occurred_at)


def _participant_removed(view: PlanView, p: dict[str, Any], e: IntegrationEvent) -> None:
    view.professionals.pop(p["participant_id"], None)
    consent = view.consents.get(p["participant_id"])
    if consent:
        consent["withdrawn"] = True


def _consent_given(view: PlanView, p: dict[str, Any], e: IntegrationEvent) -> None:
    view.consents[p["relative_id"]] = {"valid_until": p.get("valid_until"), "withdrawn": False}


def _consent_withdrawn(view: PlanView, p: dict[str, Any], e: IntegrationEvent) -> None:
    if p["relative_id"] not in view.consents:
        raise OutOfOrder(f"withdrawal of a consent never seen ({p['relative_id']})")
    view.consents[p["relative_id"]]["withdrawn"] = True


def _evaluation_scheduled(view: PlanView, p: dict[str, Any], e: IntegrationEvent) -> None:
    view.evaluations[p["evaluation_id"]] = {"scheduled_for": p["scheduled_for"], "held_at": None}


def _evaluation_held(view: PlanView, p: dict[str, Any], e: IntegrationEvent) -> None:
    evaluation = view.evaluations.get(p["evaluation_id"])
    if evaluation is None:
        raise OutOfOrder(f"evaluation {p['evaluation_id']} held but never scheduled")
    evaluation["held_at"] = e.occurred_at
    if view.last_evaluation_at is None or e.occurred_at > view.last_evaluation_at:
        view.last_evaluation_at = e.occurred_at


def _meeting(view: PlanView, meeting_id: str) -> dict[str, Any]:
    return view.meetings.setdefault(meeting_id, {
        "status": "requested", "scheduled_for": None, "place": None, "transport": None,
        "companion": None, "no_show_strategy": None, "times_missed": 0, "missed_at": None})


def _meeting_requested(view: PlanView, p: dict[str, Any], e: IntegrationEvent) -> None:
    _meeting(view, p["meeting_id"])


def _meeting_scheduled(view: PlanView, p: dict[str, Any], e: IntegrationEvent) -> None:
    meeting = _meeting(view, p["meeting_id"])
    meeting.update(status="scheduled", scheduled_for=p["scheduled_for"], place=p["place"],
                   transport=p.get("transport"), companion=p.get("companion"),
                   no_show_strategy=p["no_show_strategy"])


def _meeting_held(view: PlanView, p: dict[str, Any], e: IntegrationEvent) -> None:
    if p["meeting_id"] not in view.meetings:
        raise OutOfOrder(f"triangle meeting {p['meeting_id']} held but never seen")
    view.meetings[p["meeting_id"]]["status"] = "held"


def _meeting_missed(view: PlanView, p: dict[str, Any], e: IntegrationEvent) -> None:
    meeting = view.meetings.get(p["meeting_id"])
    if meeting is None:
        raise OutOfOrder(f"triangle meeting {p['meeting_id']} missed but never seen")
    meeting["status"] = "missed"
    meeting["times_missed"] += 1
    meeting["missed_at"] = e.occurred_at


def _information(view: PlanView, p: dict[str, Any], e: IntegrationEvent) -> None:
    view.information[p["information_id"]] = {"topic": p["topic"], "form": p["form"],
                                             "given_at": e.occurred_at}


def _closed(view: PlanView, p: dict[str, Any], e: IntegrationEvent) -> None:
    view.closed = True


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
