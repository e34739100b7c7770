"""Authorisation for the plan API: the domain's policy (domain/policy.py) applied to each
request, and the access log written for every attempt on a plan.

``requires(action)`` authenticates the caller, loads the plan the path names, asks the policy,
and hands the view an ``Access`` (caller, plan, the sections they see): 401 and 403 come before
anything of the request is validated. The view passes the plan on explicitly.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from flask import current_app, g, request
from flask_smorest import abort

from careplan_shared.auth import Principal
from careplan_shared.authentication import authenticate
from careplan_shared.problem import problem
from plan_service.adapters.access_log import AccessEntry, AccessLogUnavailable, now_iso
from plan_service.api.errors import TYPE
from plan_service.domain import policy
from plan_service.domain.plan import IndividualPlan
from plan_service.domain.policy import POLICY, Caller

READS = frozenset({"plan.read", "timeline.read", "access_log.read"})  # actions that show plan content
ACTIONS = {"plan.read": "read_plan", "timeline.read": "read_timeline", "plan.write": "write_events",
           "access_log.read": "read_access_log", "plan.create": "open_plan", "feed.read": "read_feed"}


@dataclass(frozen=True)
class Access:
    """What ``requires`` found out: who calls, the plan (None for actions on no plan), and the
    sections of it they see."""

    principal: Principal
    plan: IndividualPlan | None
    sections: frozenset[str]

    @property
    def caller(self) -> Caller:
        return Caller(self.principal.role, self.principal.subject)

    def allows(self, action: str) -> Callable[[IndividualPlan], bool]:
        """The same check on another version of the plan (record() asks it on a newer one)."""
        return lambda plan: policy.decide(action, self.caller, plan, datetime.now(timezone.utc)).allowed


def authorize(action: str, plan_id: uuid.UUID | None = None, principal: Principal | None = None,
              logged_as: str | None = None) -> Access:
    """The policy's answer for this request: the bearer token's caller (API), or ``principal``
    (the pages: the person signed in to the session). Refused: 403; the attempt is logged, as
    ``logged_as`` when given (the same action through another representation, e.g. FHIR)."""
    principal = principal or authenticate()
    caller = Caller(principal.role, principal.subject)
    now = datetime.now(timezone.utc)
    plan = None
    plans = current_app.extensions["careplan"].plans
    write = action == "plan.write"
    if plan_id is not None:
        # Current state decides, also for as_of reads. No such plan: 404, and no access-log
        # entry (a log nobody can ever read, growing with every guessed id). A write: the
        # cached plan, no round trip (record() finds a stale one at commit and asks
        # Access.allows again on the newer version); refused on it, the store's plan decides.
        plan = plans.get_plan(plan_id, fresh=not write)
        g.access_attempt = (action, str(plan_id), principal, logged_as)
    decision = policy.decide(action, caller, plan, now)
    if not decision.allowed and write and plan is not None:
        plan = plans.get_plan(plan_id)
        decision = policy.decide(action, caller, plan, now)
    if not decision.allowed:
        where = " on this plan" if plan is not None else ""
        abort(403, message=f"the role {principal.role} may not do {action}{where}")
    return Access(principal, plan, decision.sections)


def requires(action: str, logged_as: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Check the caller before anything else of the request is looked at (so 401/403 come
    before 422), and give the view ``access=``. Put it above flask-smorest's decorators.
    ``logged_as``: the access log's name for it, when not the action's own (ACTIONS)."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            return view(*args, access=authorize(action, kwargs.get("plan_id"), logged_as=logged_as), **kwargs)

        return checked

    return decorate


def log_access(response: Any) -> Any:
    """after_request: one access-log entry for every attempt on an existing plan (also the
    refused), durable before the response leaves; a read that cannot be logged shows nothing."""
    attempt = g.get("access_attempt")
    if attempt is None:
        return response
    action, plan_id, principal, logged_as = attempt
    status = response.status_code
    name = logged_as or ACTIONS[action]
    if action == "plan.read" and request.args.get("as_of"):
        name += "_as_of"
    result = ("allowed" if status < 400 else "denied" if status in (401, 403)
              else "not_found" if status == 404 else "rejected")
    entry = AccessEntry(now_iso(datetime.now(timezone.utc)), plan_id, principal.subject, principal.role,
                        principal.on_behalf_of, name, result, status)
    log = current_app.extensions["careplan"].access_log
    try:
        log.append(entry)  # durable before anything of the plan leaves
    except AccessLogUnavailable:
        if action in READS and status < 400:
            # No read without its entry: show nothing, and log the attempt once the store is back.
            log.keep([replace(entry, result="unavailable", status=503)])
            if request.blueprint == "pages":  # a page: the HTML error page, with the pages' own headers
                from flask import make_response

                from careplan_shared.pages import error_page

                page = make_response(error_page(503))
                for header in ("Content-Security-Policy", "Referrer-Policy"):
                    if header in response.headers:
                        page.headers[header] = response.headers[header]
                page.headers["Retry-After"] = "5"
                return page
            return problem(503, "Service Unavailable", "The access log cannot be written just now, so "
                           "the plan cannot be shown. Nothing was shown; try again shortly.",
                           type_=TYPE + "access-log-unavailable", headers={"Retry-After": "5"})
        log.keep([entry])  # it happened (a change is stored, a refusal was answered): log it later
    return response


__all__ = ["ACTIONS", "Access", "POLICY", "authenticate", "authorize", "log_access", "requires"]
