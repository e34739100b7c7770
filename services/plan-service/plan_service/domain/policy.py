"""Who may do what with a plan: ONE pure policy, used by the API for every request and by the
tests (the authorisation matrix is generated from POLICY).

Each (action, role) names the condition under which it is allowed:
- ``any``: every caller of that role (the EPR system account, a clinician opening a plan);
- ``own``: the patient whose plan it is;
- ``assigned``: the plan's assigned coordinator;
- ``participant``: a clinician taking part in the plan (a professional participant, the
  coordinator, or the clinician who opened it);
- ``consent``: a relative with a current consent of the patient; they see only the sections
  it covers, and a withdrawal or expiry counts from the next request.
Anything else is refused. Which event types a role may record is the event type registry's
(``EventType.recorders``): a patient records their own words and their consents.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from plan_service.domain import event_types
from plan_service.domain.event_types import FULL
from plan_service.domain.plan import IndividualPlan

POLICY: dict[str, dict[str, str]] = {
    # Plans are opened from the EPR (by its system account or a clinician); a coordinator is
    # assigned to a plan once it exists.
    "plan.create": {"integration": "any", "clinician": "any"},
    "plan.write": {"integration": "any", "clinician": "participant", "coordinator": "assigned", "patient": "own"},
    "plan.read": {"integration": "any", "clinician": "participant", "coordinator": "assigned", "patient": "own",
                  "relative": "consent"},
    "timeline.read": {"integration": "any", "clinician": "participant", "coordinator": "assigned",
                      "patient": "own", "relative": "consent"},
    "access_log.read": {"coordinator": "assigned", "patient": "own"},
    "feed.read": {"integration": "any"},
}
NOTHING: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Caller:
    role: str
    subject: str


@dataclass(frozen=True)
class Decision:
    allowed: bool
    sections: frozenset[str]  # what of the plan the caller sees (projection.py)


def decide(action: str, caller: Caller, plan: IndividualPlan | None, now: datetime) -> Decision:
    """May ``caller`` do ``action`` (on ``plan``; None: an action on no plan), and what of the
    plan do they see."""
    rule = POLICY[action].get(caller.role)
    if rule is None:
        return Decision(False, NOTHING)
    if rule == "any":
        return Decision(True, FULL)
    if plan is None:
        return Decision(False, NOTHING)
    who = caller.subject
    if rule == "consent":
        sections = plan.consented_sections(who, now)
        return Decision(bool(sections), sections)
    allowed = {"own": plan.is_patient, "assigned": plan.is_coordinator,
               "participant": plan.takes_part}[rule](who)
    return Decision(allowed, FULL if allowed else NOTHING)


def refused_types(caller: Caller, types: list[str]) -> list[str]:
    """The event types among ``types`` this caller's role may not record (sorted, unique)."""
    return sorted({t for t in types if caller.role not in getattr(event_types.BY_NAME.get(t), "recorders", ())})


def recordable_by(role: str) -> list[str]:
    return sorted(t.name for t in event_types.BY_NAME.values() if t.command and role in t.recorders)
