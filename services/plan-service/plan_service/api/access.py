"""Who may call what. One table, used by the endpoints and by the tests.

This is the baseline (issue: foundation). Relatives' consent-scoped reads and the access
log plug in here: ``authorize`` is the single gate for plan content.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any, Callable

from flask import current_app
from flask_smorest import abort

from careplan_shared.access import authenticate
from careplan_shared.auth import WRITER_ROLES, Principal

ALL_ROLES = frozenset({"integration", "clinician", "coordinator", "patient", "relative"})

# action -> roles that may attempt it. "own" roles are further checked against the plan.
POLICY: dict[str, frozenset[str]] = {
    "plan.create": WRITER_ROLES,
    "plan.write": WRITER_ROLES,
    "plan.read": frozenset({"integration", "clinician", "coordinator", "patient"}),
    "timeline.read": frozenset({"integration", "clinician", "coordinator", "patient"}),
    "feed.read": frozenset({"integration"}),
}
OWN_PLAN_ONLY = frozenset({"patient"})


def require(action: str) -> Principal:
    principal = authenticate()
    if principal.role not in POLICY[action]:
        abort(403, message=f"the role {principal.role} may not do {action}")
    return principal


def authorize(action: str, plan_id: uuid.UUID | None = None) -> Principal:
    principal = require(action)
    if plan_id is not None and principal.role in OWN_PLAN_ONLY:
        plans = current_app.extensions["careplan"].plans
        if plans.patient_of(plan_id) != principal.subject:
            abort(403, message="a patient may read only their own plans")
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
