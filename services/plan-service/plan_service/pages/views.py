"""Views of plan-service's pages.

Every page on a plan asks ``api.authorization.authorize`` (the domain's policy, as the API
does) with the person signed in to the session; that also makes the app's ``log_access`` write
the access-log entry before the page leaves. What a page shows of the plan comes from the one
projection (present.py); what a form records goes through the API's request schemas and
``PlanApplication.record``, like a posted event.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from careplan_shared import pages
from careplan_shared.pages.i18n import selected_language
from careplan_shared.vocabulary import CONSENT_SCOPES
from plan_service.api import schemas
from plan_service.api import views as api_views
from plan_service.api.authorization import Access, authorize
from plan_service.application import projection
from plan_service.application.plans import ConcurrentWrite, EventRejected, PlanApplication
from plan_service.domain import policy
from plan_service.domain.errors import Forbidden, PlanNotFound
from plan_service.domain.plan import IndividualPlan
from plan_service.domain.policy import Caller
from plan_service.domain.values import Consent
from plan_service.pages import forms, present
from plan_service.pages.forms import GENERAL, FormErrors

ROLES = ("patient", "relative", "coordinator")
PAGE_SIZE = 20

bp = pages.blueprint("pages", __name__, roles=ROLES, template_folder="templates",
                     static_folder="static", static_url_path="/assets/plan")


class AccessEnded(Exception):
    """A relative the policy refuses on a plan: their consent ended (or never covered it)."""


@bp.context_processor
def _helpers() -> dict[str, Any]:
    return {"when": present.when, "day": present.day, "iso": present.iso,
            "cap": lambda text: str(text)[:1].upper() + str(text)[1:]}


@bp.errorhandler(AccessEnded)
def _access_ended(_: AccessEnded):
    return render_template("plan/access_ended.html"), 403


HOME_LABELS = {"patient": _l("My plan"), "relative": _l("Plans I can see"), "coordinator": _l("Plans I coordinate")}


def nav() -> list[tuple[str, str]]:
    principal = pages.current_principal()
    if principal is None or principal.role not in HOME_LABELS:
        return []
    return [(str(HOME_LABELS[principal.role]), url_for("pages.home"))]


def _plans() -> PlanApplication:
    return current_app.extensions["careplan"].plans


def _authorize(action: str, plan_id: uuid.UUID) -> Access:
    """The API's authorisation for the signed-in person (403 and 404 as pages)."""
    try:
        access = authorize(action, plan_id, principal=g.principal)
    except PlanNotFound:
        abort(404)
    except HTTPException as e:
        if e.code == 403 and g.principal.role == "relative" and action in ("plan.read", "timeline.read"):
            raise AccessEnded() from None
        raise
    assert access.plan is not None  # the route names a plan
    return access


def _paging() -> dict[str, Any]:
    """``before`` and ``limit`` as the API takes them (422 otherwise)."""
    raw: dict[str, Any] = {k: request.args[k] for k in ("before", "limit") if k in request.args}
    raw.setdefault("limit", PAGE_SIZE)
    try:
        return schemas.TimelineQuery().load(raw)
    except ValidationError:
        abort(422)


def _own_consent(access: Access) -> Consent | None:
    """A relative's own consent: the terms of the reader's own access (what the policy decided
    on), never anyone else's; the plan's content is read only through the projection."""
    if access.principal.role != "relative" or access.plan is None:
        return None
    return access.plan.consents.get(access.principal.subject)


def _consent_line(access: Access) -> dict[str, Any] | None:
    """For a relative: what their consent lets them see now (the policy's sections), and until
    when (their own consent's end)."""
    if access.principal.role != "relative" or access.plan is None:
        return None
    consent = _own_consent(access)
    until = consent.valid_until if consent is not None else None
    return {"covers": present.scope_words(s for s in CONSENT_SCOPES if s in access.sections),
            "until": present.day(until) if until else ""}


# -- home -------------------------------------------------------------------------------------

@bp.get("/")
def home():
    principal = g.principal
    plans = _plans()
    if principal.role == "patient":
        plan_id = plans.open_plan_of(principal.subject)
        if plan_id is not None:
            return redirect(url_for("pages.plan", plan_id=plan_id))
        return render_template("plan/home.html", title=_("My plan"), items=[], ended=0)
    as_relative, as_coordinator = plans.plans_of(principal.subject)
    caller = Caller(principal.role, principal.subject)
    at = present.now()
    items, ended = [], 0
    for plan_id in as_relative if principal.role == "relative" else as_coordinator:
        try:
            plan = plans.get_plan(plan_id)
        except PlanNotFound:
            continue
        decision = policy.decide("plan.read", caller, plan, at)
        if not decision.allowed:
            # A relative whose consent was withdrawn or ran out is told so; one never given a
            # consent has nothing shared with them yet; a replaced coordinator: not theirs now.
            ended += principal.role == "relative" and _own_consent(Access(principal, plan, decision.sections)) is not None
            continue
        # A list shows no one's identity: who the patient is shows on the plan's page, whose
        # every read is in the access log.
        shown = present.shown_plan(plan, decision.sections, names=("id", "opened_at", "closed"))
        item: dict[str, Any] = {"id": plan.id, "label": present.plan_label(shown), "patient_id": None,
                                "closed": present.day(shown["closed"]["at"]) if shown.get("closed") else ""}
        if principal.role == "relative":
            item["consent"] = _consent_line(Access(principal, plan, decision.sections))
        items.append(item)
    items.sort(key=lambda i: bool(i["closed"]))
    title = _("Plans I can see") if principal.role == "relative" else _("Plans I coordinate")
    return render_template("plan/home.html", title=title, items=items, ended=ended)


# -- the plan -------------------------------------------------------------------------------

@bp.get("/plans/<uuid:plan_id>")
def plan(plan_id: uuid.UUID):
    return _render_plan(_authorize("plan.read", plan_id))


def _render_plan(access: Access, errors: FormErrors | None = None, status: int = 200):
    plan = access.plan
    assert plan is not None
    sections, principal = access.sections, access.principal
    at = present.now()
    shown = present.shown_plan(plan, sections)
    context: dict[str, Any] = {
        "plan_id": plan.id, "sections": sections, "shown": shown, "errors": errors,
        "is_patient": principal.role == "patient", "closed": shown.get("closed"),
        "closed_words": present.words("close_reason", shown["closed"].get("reason")) if shown.get("closed") else "",
        "consent_line": _consent_line(access), "label": present.plan_label(shown),
        "access_log": policy.decide("access_log.read", access.caller, plan, at).allowed,
        "scopes": [{"code": s, "label": present.words("scope", s), "hint": str(present.SCOPE_HINTS[s])}
                   for s in CONSENT_SCOPES],
        "min_day": forms.today_value(),
    }
    if "what_matters" in sections:
        told = shown.get("what_matters") or []
        context["what_matters"] = told[-1] if told else None
        context["what_mattered"] = list(reversed(told[:-1]))
    if "goals" in sections:
        history = present.shown_entries(_plans(), plan, sections, present.GOAL_EVENTS)
        context["goals"] = present.goals(shown, history)
    if "information" in sections:
        context["information"] = present.information(shown)
    if "participants" in sections:
        context["people"] = present.people(shown, at)
    context["errors_elsewhere"] = errors is not None and not _shown_with_its_form(errors, context)
    if "evaluations" in sections or "meetings" in sections:
        context["meetings"] = present.meetings(shown, at)
    return render_template("plan/plan.html", **context), status


def _shown_with_its_form(errors: FormErrors, context: dict[str, Any]) -> bool:
    """Whether the page shows the refused form (its messages go beside its fields); if not
    (a relative who no longer takes part, a consent no longer there to withdraw, a closed
    plan), the messages go at the top of the page."""
    if not context["is_patient"] or context["closed"]:
        return False
    if errors.form == "what_matters":
        return "what_matters" in context["sections"]
    relatives = (context.get("people") or {}).get("relatives") or []
    relative = next((r for r in relatives if r["participant_id"] == errors.key), None)
    if relative is None:
        return False
    return errors.form == "consent" or relative["state"] in ("current", "later")


def _patient_writes(plan_id: uuid.UUID, form: str, body: dict[str, Any], key: str | None, done: str, anchor: str):
    """Record the patient's form as the API would record the same event; a refusal shows the
    form again with its message (422), nothing stored."""
    access = _authorize("plan.write", plan_id)
    if access.principal.role != "patient":
        abort(403)  # the pages write only the patient's own words and consents
    try:
        items = forms.load(body)
    except ValidationError as e:
        return _render_plan(access, FormErrors(form, key, forms.validation_messages(e, body),
                                               forms.posted_values(body, request.form)), 422)
    if policy.refused_types(access.caller, [type_ for type_, _fields in items]):
        abort(403)
    try:
        _plans().record(plan_id, items, actor=access.principal.actor, plan=access.plan)
    except EventRejected as e:
        if isinstance(e.error, Forbidden):
            abort(403)
        return _render_plan(access, FormErrors(form, key, forms.rule_messages(form, e.error),
                                               forms.posted_values(body, request.form)), 422)
    except ConcurrentWrite:
        message = _("Someone changed the plan at the same moment. Nothing was saved; please try again.")
        return _render_plan(access, FormErrors(form, key, {GENERAL: message}, forms.posted_values(body, request.form)),
                            409)
    flash(done, "ok")
    return redirect(url_for("pages.plan", plan_id=plan_id, _anchor=anchor), 303)


@bp.post("/plans/<uuid:plan_id>/what-matters")
def record_what_matters(plan_id: uuid.UUID):
    return _patient_writes(plan_id, "what_matters", forms.what_matters(request.form, selected_language()), None,
                           _("Saved. Thank you for telling us what matters to you."), "what-matters")


@bp.post("/plans/<uuid:plan_id>/consents")
def give_consent(plan_id: uuid.UUID):
    body = forms.consent(request.form)
    return _patient_writes(plan_id, "consent", body, body["relative_id"], _("Saved. The consent is as you chose."),
                           "people")


@bp.post("/plans/<uuid:plan_id>/consents/withdraw")
def withdraw_consent(plan_id: uuid.UUID):
    body = forms.withdrawal(request.form)
    return _patient_writes(plan_id, "withdraw", body, body["relative_id"],
                           _("The consent is withdrawn. From now on they cannot see your plan."), "people")


# -- the timeline ---------------------------------------------------------------------------

@bp.get("/plans/<uuid:plan_id>/timeline")
def timeline(plan_id: uuid.UUID):
    access = _authorize("timeline.read", plan_id)
    plan, sections = access.plan, access.sections
    assert plan is not None
    args = _paging()
    events, next_before = _plans().timeline(plan_id, before=args["before"], limit=args["limit"],
                                            visible=projection.event_filter(sections))
    shown = present.shown_plan(plan, sections)
    lookup = present.Lookup.of(shown)
    items = [present.timeline_item(e, sections, lookup) for e in events]
    goals = present.goals(shown, []) if "goals" in sections else []
    return render_template(
        "plan/timeline.html", plan_id=plan_id, groups=present.by_month(items), legend=present.legend(sections),
        goals=goals, progress=present.progress(goals), next_before=next_before, first_page=args["before"] is None,
        consent_line=_consent_line(access), label=present.plan_label(shown),
        access_log=policy.decide("access_log.read", access.caller, plan, present.now()).allowed)


# -- who has seen my plan ----------------------------------------------------------------

ACTION_WORDS = {
    "read_plan": (_l("read the plan"), _l("tried to read the plan")),
    "read_plan_as_of": (_l("read an earlier version of the plan"), _l("tried to read an earlier version of the plan")),
    "read_plan_fhir": (_l("read the plan in FHIR format (for health record systems)"),
                       _l("tried to read the plan in FHIR format (for health record systems)")),
    "read_plan_fhir_as_of": (_l("read an earlier version of the plan in FHIR format"),
                             _l("tried to read an earlier version of the plan in FHIR format")),
    "read_timeline": (_l("read the plan's timeline"), _l("tried to read the plan's timeline")),
    "read_access_log": (_l("read this list of who has seen the plan"), _l("tried to read this list")),
    "write_events": (_l("recorded changes in the plan"), _l("tried to record changes in the plan")),
    "open_plan": (_l("opened the plan"), _l("tried to open another plan")),
}
RESULT_WORDS = {
    "denied": _l("not allowed"), "not_found": _l("not found"), "rejected": _l("not used: something in it was wrong"),
    "unavailable": _l("nothing was shown, because this list could not be written just then"),
}


def _who(entry: dict[str, Any], me: Any) -> str:
    if entry["subject"] == me.subject and entry["role"] == me.role:
        return _("You")
    if entry["on_behalf_of"]:
        return _("Clinician %(id)s, through the EPR system %(system)s", id=entry["on_behalf_of"], system=entry["subject"])
    return _("%(role)s %(id)s", role=present.words("role", entry["role"]).capitalize(), id=entry["subject"])


def _seen(entry: dict[str, Any], me: Any) -> dict[str, Any]:
    done, tried = ACTION_WORDS.get(entry["action"], (entry["action"], entry["action"]))
    allowed = entry["result"] == "allowed"
    return {"id": entry["id"], "at": entry["at"], "who": _who(entry, me), "what": str(done if allowed else tried),
            "allowed": allowed, "result": "" if allowed else str(RESULT_WORDS.get(entry["result"], entry["result"]))}


@bp.get("/plans/<uuid:plan_id>/access-log")
def access_log(plan_id: uuid.UUID):
    access = _authorize("access_log.read", plan_id)
    args = _paging()
    log = current_app.extensions["careplan"].access_log
    rows = log.entries(str(plan_id), limit=args["limit"] + 1, before=args["before"])
    more = len(rows) > args["limit"]
    rows = rows[: args["limit"]]
    items = [_seen(api_views.access_entry(i, e), access.principal) for i, e in rows]
    plan: IndividualPlan | None = access.plan
    assert plan is not None
    shown = present.shown_plan(plan, access.sections, names=("opened_at",))
    return render_template("plan/access_log.html", plan_id=plan_id, items=items, first_page=args["before"] is None,
                           next_before=rows[-1][0] if more and rows else None, label=present.plan_label(shown))
