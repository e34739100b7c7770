"""Views of notification-service's pages: the coordinator's inbox (``/``), one prompt
(``/prompts/<id>``) and acknowledging it (a form).

Listing, reading and acknowledging go through the same use cases as the API
(``Notifications.inbox``, ``prompt_for``, ``acknowledge``), with the signed-in person as the
recipient: another coordinator's prompt is "not found" (404), as in the API. Dates and times
are shown in Europe/Oslo in the chosen language (flask-babel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any
from urllib.parse import quote

from flask import abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import format_date, format_time, lazy_gettext
from flask_babel import gettext as _

from careplan_shared import pages
from careplan_shared.vocabulary import InformationTopic
from notification_service.application.service import ALL, Notifications, PromptClosed, PromptNotFound
from notification_service.domain.prompts import Prompt, PromptStatus, Reason
from notification_service.domain.view import MeetingStatus

bp = pages.blueprint("inbox", __name__, roles=("coordinator",), template_folder="templates",
                     static_folder="static", static_url_path="/assets/inbox")

PER_PAGE = 25
LOOKED_THROUGH = 1000  # prompts read per listing (soonest due first), then filtered and paged here

# The reasons in plain words: a short name (the filter, the headings) and what to do.
REASON_NAMES = {
    Reason.EVALUATION_DUE: lazy_gettext("Evaluation due"),
    Reason.EVALUATION_SUGGESTED: lazy_gettext("Time for an evaluation"),
    Reason.TRIANGLE_MEETING_SUGGESTED: lazy_gettext("Suggest a triangle meeting"),
    Reason.NO_SHOW_FOLLOW_UP: lazy_gettext("Did not come to the triangle meeting"),
    Reason.WRITTEN_INFORMATION_DUE: lazy_gettext("Give the information in writing"),
    Reason.CONSENT_EXPIRING: lazy_gettext("A consent is running out"),
    Reason.PLAN_INACTIVE: lazy_gettext("Nothing recorded in the plan for a long time"),
}
REASON_TEXTS = {
    Reason.EVALUATION_DUE: lazy_gettext("An evaluation of the plan is planned for now. Hold it together with the patient."),
    Reason.EVALUATION_SUGGESTED: lazy_gettext(
        "The plan has not been evaluated for a long time. Agree on a time for an evaluation with the patient."),
    Reason.TRIANGLE_MEETING_SUGGESTED: lazy_gettext(
        "The young person gets help from both the municipality and the specialist service. "
        "Suggest a triangle meeting: the municipality, the specialist service and the young person together."),
    Reason.NO_SHOW_FOLLOW_UP: lazy_gettext(
        "The patient did not come to the triangle meeting. Follow up today, the way you agreed in advance."),
    Reason.WRITTEN_INFORMATION_DUE: lazy_gettext(
        "The patient was given information only by word of mouth. Give it in writing too."),
    Reason.CONSENT_EXPIRING: lazy_gettext(
        "A relative's consent ends soon. Talk with the patient about whether it should go on."),
    Reason.PLAN_INACTIVE: lazy_gettext(
        "Nobody has recorded anything in this plan for a long time. Talk with the patient: is the plan "
        "still in use? Evaluate it together, or close it."),
}
# What the due time means, where it means more than "due".
DUE_LABELS = {
    Reason.EVALUATION_DUE: lazy_gettext("Evaluation planned for"),
    Reason.NO_SHOW_FOLLOW_UP: lazy_gettext("Follow up by"),
    Reason.CONSENT_EXPIRING: lazy_gettext("Consent ends"),
}
TOPIC_NAMES: dict[str, Any] = {
    InformationTopic.OFFERED_HELP: lazy_gettext("The help on offer"),
    InformationTopic.RIGHTS: lazy_gettext("The patient's rights"),
    InformationTopic.CHOICES: lazy_gettext("The choices the patient has"),
    InformationTopic.OTHER: lazy_gettext("Something else"),
}
STATUS_NAMES = {
    PromptStatus.OPEN: lazy_gettext("Open"),
    PromptStatus.ACKNOWLEDGED: lazy_gettext("Acknowledged"),
    PromptStatus.RESOLVED: lazy_gettext("Done (the plan shows it was dealt with)"),
}
STATUS_FILTERS = (
    (PromptStatus.OPEN.value, lazy_gettext("Open")),
    (PromptStatus.ACKNOWLEDGED.value, lazy_gettext("Acknowledged")),
    (PromptStatus.RESOLVED.value, lazy_gettext("Done")),
    (ALL, lazy_gettext("All")),
)


@dataclass(frozen=True)
class Item:
    """One prompt as the pages show it."""

    prompt: Prompt
    name: str
    about: str
    due_label: str
    status: str
    overdue: bool  # open, and its due time has passed
    escalated: bool  # not acknowledged in time
    plan_url: str


@dataclass(frozen=True)
class Move:
    """One entry of a prompt's history: it moved from one recipient to another."""

    at: datetime | None
    old: str | None  # recipient ids (coordinators, or the unassigned inbox); None: nobody
    new: str | None


def _history(prompt: Prompt) -> list[Move]:
    moves = []
    for entry in prompt.history:
        if not isinstance(entry, dict) or entry.get("kind") != "reassigned":
            continue
        try:
            at = datetime.fromisoformat(entry["at"]) if isinstance(entry.get("at"), str) else None
        except ValueError:
            at = None
        moves.append(Move(at, _text(entry.get("from")), _text(entry.get("to"))))
    return moves


def _moment(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Meeting:
    """What was agreed for a triangle meeting the patient did not come to."""

    strategy: str | None
    place: str | None
    time: datetime | None  # the time the meeting was set for (None: not known for this miss)
    transport: str | None
    companion: str | None
    times_missed: int | None


def nav() -> list[tuple[str, str]]:
    if pages.current_principal() is None:
        return []
    return [(_("Inbox"), url_for("inbox.index"))]


def _notifications() -> Notifications:
    return current_app.extensions["careplan"].notifications


def _me() -> str:
    return g.principal.subject


def plan_url(plan_id: str) -> str:
    """The plan's page on plan-service (NOTIFICATION_PLAN_PAGES_URL, default PLAN_SERVICE_URL)."""
    config = current_app.extensions["careplan"].config
    base = (config.plan_pages_url or config.plan_service_url).rstrip("/")
    return f"{base}/plans/{quote(plan_id, safe='')}"


def _item(prompt: Prompt, now: datetime) -> Item:
    return Item(
        prompt=prompt,
        name=str(REASON_NAMES.get(prompt.rule, prompt.rule)),
        about=str(REASON_TEXTS.get(prompt.rule, "")),
        due_label=str(DUE_LABELS.get(prompt.rule, lazy_gettext("Due"))),
        status=str(STATUS_NAMES.get(prompt.status, prompt.status)),
        overdue=prompt.status == PromptStatus.OPEN and prompt.due_at < now,
        escalated=prompt.escalated_at is not None,
        plan_url=plan_url(prompt.plan_id),
    )


def when(moment: datetime) -> str:
    """A moment in Europe/Oslo, in the chosen language: "mandag 2. mars 2026 kl. 10:00"."""
    try:
        return _("%(date)s at %(time)s", date=format_date(moment, "full"), time=format_time(moment, "short"))
    except (OverflowError, ValueError):  # the first or last hours of time have no local day: as UTC
        return iso(moment)


def day(value: date) -> str:
    return format_date(value, "long")


def iso(moment: datetime) -> str:
    """For <time datetime>: UTC, whole seconds."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _date(value: Any) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


@bp.context_processor
def _helpers() -> dict[str, Any]:
    return {"when": when, "day": day, "iso": iso, "as_date": _date}


@bp.get("/")
def index():
    status = request.args.get("status") or PromptStatus.OPEN.value
    reason = request.args.get("reason") or ""
    if status not in {value for value, _name in STATUS_FILTERS} or (reason and reason not in set(Reason)):
        abort(400)
    notifications = _notifications()
    found = notifications.inbox(_me(), status, LOOKED_THROUGH)
    cut = len(found) >= LOOKED_THROUGH
    if reason:
        found = [p for p in found if p.rule == reason]
    last_page = max(1, math.ceil(len(found) / PER_PAGE))
    page = min(max(request.args.get("page", 1, type=int) or 1, 1), last_page)
    now = notifications.clock.now()
    items = [_item(p, now) for p in found[(page - 1) * PER_PAGE: page * PER_PAGE]]

    def page_url(number: int) -> str:
        return url_for("inbox.index", status=status, reason=reason or None, page=number)

    return render_template(
        "inbox/index.html", items=items, total=len(found), status=status, reason=reason, cut=cut,
        statuses=[(value, str(name)) for value, name in STATUS_FILTERS],
        reasons=[(r.value, str(REASON_NAMES[r])) for r in Reason],
        page=page, last_page=last_page, page_url=page_url, limit=LOOKED_THROUGH,
        filtered=status != PromptStatus.OPEN.value or bool(reason))


@bp.get("/prompts/<prompt_id>")
def prompt(prompt_id: str):
    notifications = _notifications()
    try:
        found = notifications.prompt_for(prompt_id, _me())
    except PromptNotFound:
        abort(404)  # another coordinator's prompt does not exist for you
    meeting = _meeting(notifications, found) if found.rule == Reason.NO_SHOW_FOLLOW_UP else None
    topic = _text(found.details.get("topic"))
    days = found.details.get("inactive_days")
    return render_template("inbox/prompt.html", item=_item(found, notifications.clock.now()), meeting=meeting,
                           details=found.details, topic=str(TOPIC_NAMES.get(topic, topic)) if topic else None,
                           history=_history(found), last_event_at=_moment(found.details.get("last_event_at")),
                           inactive_days=days if isinstance(days, int) and not isinstance(days, bool) else None)


@bp.post("/prompts/<prompt_id>/acknowledge")
def acknowledge(prompt_id: str):
    try:
        done = _notifications().acknowledge(prompt_id, _me())
    except PromptNotFound:
        abort(404)
    except PromptClosed:
        return pages.error_page(409, _("This prompt has already closed by itself: the plan shows it was dealt with."))
    flash(_("Acknowledged: %(what)s. You take it from here.", what=str(REASON_NAMES.get(done.rule, done.rule))), "ok")
    return redirect(pages.safe_next(request.form.get("next"), default=url_for("inbox.index")))


def _meeting(notifications: Notifications, prompt: Prompt) -> Meeting:
    """The prompt's details (the strategy and the wishes, as they were when the meeting was
    set), and from the plan's view in the store the time the meeting was set for, if the view
    still shows this very miss (not once the meeting is set again)."""
    details = prompt.details
    times_missed = details.get("times_missed")
    time = None
    meeting_id = details.get("meeting_id")
    if isinstance(meeting_id, str):
        view = notifications.plan_view(prompt)
        held = view.meetings.get(meeting_id) if view is not None else None
        if held is not None and held["status"] == MeetingStatus.MISSED and held.get("times_missed") == times_missed:
            time = held.get("scheduled_for")
    return Meeting(
        strategy=_text(details.get("no_show_strategy")), place=_text(details.get("place")),
        time=time if isinstance(time, datetime) else None, transport=_text(details.get("transport")),
        companion=_text(details.get("companion")),
        times_missed=times_missed if isinstance(times_missed, int) else None)
