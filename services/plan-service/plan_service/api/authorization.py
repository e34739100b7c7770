"""Who may do what with a plan. One table (POLICY), used by the endpoints and by the tests.

Each (role, action) names the condition under which it is allowed:
- ``any``: every caller of that role (the EPR system account, a clinician opening a plan);
- ``own``: the patient whose plan it is;
- ``assigned``: the plan's assigned coordinator;
- ``participant``: a clinician taking part in the plan (a professional participant, the
  coordinator, or the clinician who opened it);
- ``consent``: a relative with a current consent of the patient; they see only the sections
  it covers (``visible_sections``), and a withdrawal or expiry counts from the next request.
Anything else is 403. Every attempt on a plan, allowed or not, is written to the access log.
"""

from __future__ import annotations

import functools
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

from flask import current_app, g, request
from flask_smorest import abort

from careplan_shared.access import authenticate
from careplan_shared.auth import Principal
from plan_service.adapters.access_log import AccessEntry, now_iso
from plan_service.application.projection import FULL
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
# What a patient may record in their own plan themselves (in their own words; consent).
PATIENT_EVENT_TYPES = frozenset({"WhatMattersRecorded", "RelativeConsentGiven", "RelativeConsentWithdrawn"})
ACTIONS = {"plan.read": "read_plan", "timeline.read": "read_timeline", "plan.write": "write_events",
           "access_log.read": "read_access_log", "plan.create": "open_plan", "feed.read": "read_feed"}


def _participants(plan: IndividualPlan) -> set[str]:
    ids = {p.participant_id for p in plan.participants.values() if p.kind == "professional"}
    if plan.coordinator:
        ids.add(plan.coordinator["coordinator_id"])
    return ids


def allowed(rule: str, principal: Principal, plan: IndividualPlan | None, opener: str | None,
            now: datetime) -> bool:
    """Does ``rule`` let this caller act on this plan (None: an action on no plan)?"""
    if rule == "any":
        return True
    if plan is None:
        return False
    who = principal.subject
    if rule == "own":
        return plan.patient_id == who
    if rule == "assigned":
        return bool(plan.coordinator) and plan.coordinator["coordinator_id"] == who
    if rule == "participant":
        return who in _participants(plan) or who == opener
    if rule == "consent":
        return bool(visible_sections(principal, plan, now))
    return False


def visible_sections(principal: Principal, plan: IndividualPlan, now: datetime) -> frozenset[str]:
    """The sections of the plan this reader sees (projection.py): all of them, or for a
    relative those their current consent covers (none once it is withdrawn or has expired)."""
    if principal.role != "relative":
        return FULL
    consent = plan.consents.get(principal.subject)
    if consent is None or principal.subject not in plan.participants:
        return frozenset()
    return frozenset(s for s in consent.scope if consent.covers(s, now))


def require(action: str) -> Principal:
    """For actions on no plan (open a plan, read the feed)."""
    principal = authenticate()
    if POLICY[action].get(principal.role) != "any":
        abort(403, message=f"the role {principal.role} may not do {action}")
    return principal


def authorize(action: str, plan_id: uuid.UUID | None = None) -> Principal:
    principal = authenticate()
    if plan_id is None:
        return require(action)
    rule = POLICY[action].get(principal.role)
    plans = current_app.extensions["careplan"].plans
    now = datetime.now(timezone.utc)
    # Current state decides, also for as_of reads. No such plan: 404, and no access-log entry
    # (a log nobody can ever read, growing with every guessed id).
    plan = plans.get_plan(plan_id)
    g.access = (action, str(plan_id), principal)
    if rule is None or not allowed(rule, principal, plan, getattr(plan, "opened_by", None), now):
        abort(403, message=f"the role {principal.role} may not do {action} on this plan")
    g.plan = plan
    g.sections = visible_sections(principal, plan, now)
    return principal


def requires(action: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Check the caller before anything else of the request is looked at (so 401/403 come
    before 422). Put it above flask-smorest's decorators."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            authorize(action, kwargs.get("plan_id"))
            return view(*args, **kwargs)

        return checked

    return decorate


def record_access(response: Any) -> Any:
    """after_request: one access-log entry for every attempt on a plan (also the refused)."""
    attempt = g.get("access")
    if attempt is None:
        return response
    action, plan_id, principal = attempt
    status = response.status_code
    name = ACTIONS[action]
    if action == "plan.read" and request.args.get("as_of"):
        name = "read_plan_as_of"
    result = ("allowed" if status < 400 else "denied" if status in (401, 403)
              else "not_found" if status == 404 else "rejected")
    current_app.extensions["careplan"].access_log.record(AccessEntry(
        now_iso(datetime.now(timezone.utc)), plan_id, principal.subject, principal.role,
        principal.on_behalf_of, name, result, status))
    return response


__all__ = ["POLICY", "PATIENT_EVENT_TYPES", "authenticate", "authorize", "record_access",
           "require", "requires", "visible_sections"]
