"""What the pages show of a plan, made ONLY from the one projection (application/projection.py:
the plan's fields a reader's sections show, the events they show and those events' shown
details) and the timeline's entries (application/timeline.py). Nothing here reads a field of
the plan or of an event that the reader's sections hide: the plan is dumped by the API's own
schema restricted to ``projection.plan_fields``, events go through ``timeline.entry``.

Words are translated here (vocabulary codes, the registry's summaries), and times are shown in
Europe/Oslo in the reader's language (flask-babel).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from flask_babel import format_date, format_time, to_user_timezone
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from plan_service.api import schemas
from plan_service.application import projection
from plan_service.application import timeline as timeline_view
from plan_service.application.plans import PlanApplication
from plan_service.domain import event_types
from plan_service.domain.event_types import ALWAYS
from plan_service.domain.plan import IndividualPlan, event_type

# -- words ----------------------------------------------------------------------------------

# Vocabulary codes of the contract -> plain words (English msgids; nb in the catalogue).
VOCABULARY: dict[str, dict[str, Any]] = {
    "scope": {
        "what_matters": _l("What matters to me"), "goals": _l("Goals"), "information": _l("Information given"),
        "participants": _l("Who takes part"), "evaluations": _l("Evaluations"), "meetings": _l("Triangle meetings"),
    },
    "goal_status": {"active": _l("In progress"), "achieved": _l("Achieved"), "abandoned": _l("Set aside")},
    "expressed_by": {"patient": _l("the patient"), "clinician": _l("a professional")},
    "by_short": {"patient": _l("patient"), "clinician": _l("professional")},
    # a service level as a name in a summary ("... opened in the municipal service")
    "level": {"municipal": _l("municipal"), "specialist": _l("specialist")},
    "topic": {"offered_help": _l("the help on offer"), "rights": _l("rights"), "choices": _l("choices"),
              "other": _l("other things")},
    "form": {"oral": _l("orally"), "written": _l("in writing"), "both": _l("orally and in writing")},
    "kind": {"relative": _l("relative"), "professional": _l("professional")},
    "service_level": {"municipal": _l("the municipality"), "specialist": _l("the specialist health service")},
    "requested_by": {"municipal": _l("the municipality"), "specialist": _l("the specialist health service"),
                     "patient": _l("the patient")},
    "evaluation_status": {"scheduled": _l("Planned"), "held": _l("Held")},
    "meeting_status": {"requested": _l("Asked for"), "scheduled": _l("Planned"), "held": _l("Held"),
                       "missed": _l("Did not take place")},
    "close_reason": {"goals_reached": _l("the goals were reached"), "patient_request": _l("the patient asked for it"),
                     "moved": _l("moved"), "transferred": _l("transferred to another service"),
                     "deceased": _l("deceased"), "other": _l("other reasons")},
    "given_how": {"digital": _l("given by the patient here"), "oral": _l("given orally"),
                  "written": _l("given in writing")},
    "role": {"patient": _l("patient"), "relative": _l("relative"), "coordinator": _l("coordinator"),
             "clinician": _l("clinician"), "integration": _l("EPR system")},
}
# What each scope covers, in the patient's consent form.
SCOPE_HINTS = {
    "what_matters": _l("Your own words about what matters to you."),
    "goals": _l("Your goals and how they are going."),
    "information": _l("What you have been told about help, rights and choices."),
    "participants": _l("Who takes part in your plan, and who may see what."),
    "evaluations": _l("When the plan is evaluated, and what came of it."),
    "meetings": _l("Triangle meetings: time, place and your wishes."),
}


def words(vocabulary: str, code: Any) -> str:
    """A vocabulary code in plain words (a code the catalogue does not know: as it is)."""
    if code is None:
        return ""
    found = VOCABULARY.get(vocabulary, {}).get(str(code))
    return str(found) if found is not None else str(code).replace("_", " ")


def scope_words(scopes: Iterable[str]) -> str:
    return ", ".join(words("scope", s) for s in scopes)


# -- time -----------------------------------------------------------------------------------

def as_time(value: Any) -> datetime | date | None:
    """A datetime or date as the schema dumped it (ISO text), or as it is."""
    if value is None or isinstance(value, datetime | date):
        return value
    text = str(value)
    try:
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    except ValueError:
        return None


def day(value: Any) -> str:
    """A calendar day, e.g. "12. mars 2025" (a time: its day in Europe/Oslo)."""
    moment = as_time(value)
    return format_date(moment, "long") if moment is not None else ""


def when(value: Any) -> str:
    """A time, e.g. "12. mars 2025 kl. 14:03" (Europe/Oslo); a date alone: the day."""
    moment = as_time(value)
    if moment is None:
        return ""
    if not isinstance(moment, datetime):
        return format_date(moment, "long")
    return _("%(date)s at %(time)s", date=format_date(moment, "long"), time=format_time(moment, "HH:mm"))


def iso(value: Any) -> str:
    """For <time datetime=...>."""
    moment = as_time(value)
    return moment.isoformat() if moment is not None else ""


def local_day_end(day_: date) -> datetime:
    """The last second of that day in Europe/Oslo (a consent "until 12 March" covers that day)."""
    from zoneinfo import ZoneInfo

    return datetime.combine(day_, time(23, 59, 59), tzinfo=ZoneInfo("Europe/Oslo"))


def now() -> datetime:
    return datetime.now(timezone.utc)


# -- the plan as a reader sees it -----------------------------------------------------------

def shown_plan(plan: IndividualPlan, sections: frozenset[str], names: Iterable[str] | None = None) -> dict[str, Any]:
    """The plan's representation restricted to what ``sections`` show (the API's schema and
    the one projection), optionally only ``names`` of it."""
    allowed = projection.plan_fields(sections)
    if names is not None:
        allowed = tuple(n for n in names if allowed is None or n in allowed)
    return schemas.PlanOut(only=allowed).dump(plan)


@dataclass
class Lookup:
    """Names and texts from the shown plan, for summaries (a goal's text for its id)."""

    goals: dict[str, str] = field(default_factory=dict)
    people: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, shown: Mapping[str, Any]) -> Lookup:
        people = {p["participant_id"]: p.get("name") or p["participant_id"] for p in shown.get("participants") or ()}
        coordinator = shown.get("coordinator")
        if coordinator:
            people.setdefault(coordinator["coordinator_id"], coordinator.get("name") or coordinator["coordinator_id"])
        return cls({g["goal_id"]: g["text"] for g in shown.get("goals") or ()}, people)


def _who(details: Mapping[str, Any], lookup: Lookup, default: Any) -> Any:
    person = details.get("relative_id") or details.get("participant_id")
    return lookup.people.get(person, default) if person else default


# A summary's value -> the same value in the reader's words (from the shown details only).
_VALUES: dict[str, Callable[[Mapping[str, Any], Lookup, Any], Any]] = {
    "level": lambda d, lk, v: words("level", d.get("service_level")) if d.get("service_level") else v,
    "by": lambda d, lk, v: words("by_short", d.get("expressed_by")) if d.get("expressed_by") else v,
    "form": lambda d, lk, v: words("form", d.get("form")) if d.get("form") else v,
    "topic": lambda d, lk, v: words("topic", d.get("topic")) if d.get("topic") else v,
    "scope": lambda d, lk, v: scope_words(d.get("scope") or ()) if d.get("scope") else v,
    "reason": lambda d, lk, v: words("close_reason", d.get("reason")) if d.get("reason") else v,
    "kind": lambda d, lk, v: words("kind", d.get("kind")).capitalize() if d.get("kind") else v,
    "at": lambda d, lk, v: when(d.get("scheduled_for")) if d.get("scheduled_for") else v,
    "until": lambda d, lk, v: day(d.get("valid_until")) if d.get("valid_until") else v,
    "goal": lambda d, lk, v: lk.goals.get(str(d.get("goal_id")), v),
    "who": _who,
}


class _Shown:
    """Shown details as attributes, a hidden one reads as None (as timeline.py gives them to
    the registry's summaries)."""

    def __init__(self, details: Mapping[str, Any]):
        self.__dict__.update(details)

    def __getattr__(self, name: str) -> None:
        return None


def summary(entry: Mapping[str, Any], lookup: Lookup) -> str:
    """A timeline entry's summary in the reader's language: the registry's Message for the
    entry's shown details, its template translated, its values in plain words."""
    message = event_types.BY_NAME[entry["type"]].summary(_Shown(entry["details"]))
    values = {k: _VALUES[k](entry["details"], lookup, v) if k in _VALUES else v for k, v in message.values.items()}
    return _(message.template).format(**values)


# Kinds of events on the timeline: a colour AND an icon AND a label (never colour alone).
KIND_OF_SECTION = {"what_matters": "words", "goals": "goal", "information": "info", "participants": "people",
                   "evaluations": "meeting", "meetings": "meeting", ALWAYS: "plan"}
LABEL_OF_SECTION = {
    "what_matters": _l("What matters"), "goals": _l("Goal"), "information": _l("Information"),
    "participants": _l("People"), "evaluations": _l("Evaluation"), "meetings": _l("Triangle meeting"),
    ALWAYS: _l("The plan"),
}
SECTION_ORDER = ("what_matters", "goals", "information", "participants", "evaluations", "meetings", ALWAYS)


def legend(sections: frozenset[str]) -> list[dict[str, str]]:
    """The kinds of entries these sections can show, for the timeline's key."""
    return [{"section": s, "kind": KIND_OF_SECTION[s], "label": str(LABEL_OF_SECTION[s])}
            for s in SECTION_ORDER if projection.shows(s, sections)]


def timeline_item(event: IndividualPlan.Event, sections: frozenset[str], lookup: Lookup) -> dict[str, Any]:
    entry = timeline_view.entry(event, sections)
    section = event_types.BY_NAME[entry["type"]].section
    local = to_user_timezone(entry["occurred_at"])
    return {
        "version": entry["version"], "type": entry["type"], "section": section,
        "kind": KIND_OF_SECTION.get(section, "plan"), "label": str(LABEL_OF_SECTION.get(section, section)),
        "summary": summary(entry, lookup), "occurred_at": entry["occurred_at"], "month": (local.year, local.month),
    }


def by_month(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive entries of one month together (newest first), each group with its label."""
    groups: list[dict[str, Any]] = []
    for item in items:
        if not groups or groups[-1]["month"] != item["month"]:
            label = format_date(to_user_timezone(item["occurred_at"]), "LLLL y")
            groups.append({"month": item["month"], "label": label[:1].upper() + label[1:], "entries": []})
        groups[-1]["entries"].append(item)
    return groups


def shown_entries(plans: PlanApplication, plan: IndividualPlan, sections: frozenset[str],
                  types: Iterable[str]) -> list[dict[str, Any]]:
    """Every event of these types these sections show, oldest first, as timeline entries
    (up to the plan's version as read)."""
    wanted = frozenset(types)
    visible = projection.event_filter(sections)
    return [timeline_view.entry(e, sections) for e in plans.plan_events(plan.id)
            if e.originator_version <= plan.version and event_type(e) in wanted and visible(event_type(e))]


GOAL_EVENTS = {"GoalSet": "set", "GoalRevised": "revised", "GoalAchieved": "achieved", "GoalAbandoned": "abandoned"}
STEP_WORDS = {"set": _l("Set"), "revised": _l("Revised"), "achieved": _l("Achieved"), "abandoned": _l("Set aside")}


def goals(shown: Mapping[str, Any], history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The shown goals with their history (set, revised, achieved, abandoned) and progress."""
    steps: dict[str, list[dict[str, Any]]] = {}
    for entry in history:
        details = entry["details"]
        steps.setdefault(details.get("goal_id"), []).append({
            "step": GOAL_EVENTS[entry["type"]], "label": str(STEP_WORDS[GOAL_EVENTS[entry["type"]]]),
            "at": entry["occurred_at"], "text": details.get("text"), "reason": details.get("reason"),
            "target_date": details.get("target_date"),
        })
    result = []
    for goal in shown.get("goals") or ():
        status = goal["status"]
        result.append({
            **goal, "status_words": words("goal_status", status), "by_words": words("expressed_by", goal["expressed_by"]),
            "history": steps.get(goal["goal_id"], []),
            "marks": [
                {"label": str(STEP_WORDS["set"]), "done": True},
                {"label": str(STEP_WORDS["revised"]) + (f" ×{goal['revisions']}" if goal["revisions"] > 1 else ""),
                 "done": goal["revisions"] > 0},
                {"label": words("goal_status", status), "done": status != "active",
                 "end": status if status != "active" else None},
            ],
        })
    return result


def progress(goal_list: list[dict[str, Any]]) -> dict[str, int]:
    total = len(goal_list)
    done = sum(1 for g in goal_list if g["status"] == "achieved")
    width = round(done * 10 / total) * 10 if total else 0
    return {"total": total, "done": done, "width": width}


def consent_state(consent: Mapping[str, Any], at: datetime) -> str:
    """current | withdrawn | expired | later (starts later)."""
    if consent.get("withdrawn_at"):
        return "withdrawn"
    until = as_time(consent.get("valid_until"))
    if isinstance(until, datetime) and until <= at:
        return "expired"
    start = as_time(consent.get("valid_from"))
    if isinstance(start, datetime) and start > at:
        return "later"
    return "current"


CONSENT_STATES = {"current": _l("Current"), "withdrawn": _l("Withdrawn"), "expired": _l("Ended"),
                  "later": _l("Starts later")}


def people(shown: Mapping[str, Any], at: datetime) -> dict[str, Any]:
    """Who takes part: the coordinator, professionals by service level, relatives with what
    their consent lets them see and until when."""
    consents = {c["relative_id"]: c for c in shown.get("relative_consents") or ()}
    professionals: dict[str, list[dict[str, Any]]] = {}
    relatives = []
    for person in shown.get("participants") or ():
        if person["kind"] == "professional":
            professionals.setdefault(person.get("service_level") or "", []).append(person)
        else:
            consent = consents.get(person["participant_id"])
            state = consent_state(consent, at) if consent else None
            relatives.append({
                **person, "consent": consent, "state": state,
                "state_words": str(CONSENT_STATES[state]) if state else "",
                "scope": list(consent["scope"]) if consent else [],
                "scope_words": scope_words(consent["scope"]) if consent else "",
                "until": day(consent.get("valid_until")) if consent and consent.get("valid_until") else "",
                "until_value": _date_value(consent.get("valid_until")) if consent else "",
                "given_how": words("given_how", consent.get("given_how")) if consent and consent.get("given_how") else "",
            })
    levels = [{"level": level, "label": words("service_level", level) if level else str(_l("Other services")),
               "people": professionals[level]} for level in sorted(professionals, key=lambda x: (x == "", x))]
    coordinator = shown.get("coordinator")
    return {
        "coordinator": {**coordinator, "level_words": words("service_level", coordinator.get("service_level"))}
        if coordinator else None,
        "levels": levels, "relatives": relatives,
    }


def _date_value(value: Any) -> str:
    moment = as_time(value)
    if isinstance(moment, datetime):
        return to_user_timezone(moment).date().isoformat()
    return moment.isoformat() if moment is not None else ""


def information(shown: Mapping[str, Any]) -> list[dict[str, Any]]:
    items = sorted(shown.get("information_given") or (), key=lambda i: i["given_at"], reverse=True)
    return [{**i, "topic_words": words("topic", i["topic"]), "form_words": words("form", i["form"])} for i in items]


def meetings(shown: Mapping[str, Any], at: datetime) -> dict[str, list[dict[str, Any]]]:
    """Evaluations and triangle meetings the reader sees, upcoming (soonest first) and past
    (latest first)."""
    upcoming: list[dict[str, Any]] = []
    past: list[dict[str, Any]] = []
    for evaluation in shown.get("evaluations") or ():
        item = {**evaluation, "what": "evaluation", "status_words": words("evaluation_status", evaluation["status"])}
        scheduled = as_time(evaluation["scheduled_for"])
        item["sort"] = scheduled
        (upcoming if evaluation["status"] == "scheduled" and isinstance(scheduled, datetime) and scheduled >= at
         else past).append(item)
    for meeting in shown.get("triangle_meetings") or ():
        item = {**meeting, "what": "triangle", "status_words": words("meeting_status", meeting["status"]),
                "requested_by_words": words("requested_by", meeting.get("requested_by"))}
        scheduled = as_time(meeting.get("scheduled_for"))
        item["sort"] = scheduled
        open_ = meeting["status"] in ("requested", "scheduled")
        (upcoming if open_ and (scheduled is None or (isinstance(scheduled, datetime) and scheduled >= at))
         else past).append(item)
    far = datetime.max.replace(tzinfo=timezone.utc)
    upcoming.sort(key=lambda m: m["sort"] if isinstance(m["sort"], datetime) else far)
    past.sort(key=lambda m: m["sort"] if isinstance(m["sort"], datetime) else far - timedelta(days=1), reverse=True)
    return {"upcoming": upcoming, "past": past}


def plan_label(shown: Mapping[str, Any]) -> str:
    return _("Individual plan opened %(day)s", day=day(shown.get("opened_at")))


def plan_uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
