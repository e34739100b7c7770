"""The rules: which prompts a plan needs at a moment in time.

Each rule is a small function of the plan's view and ``now``; it returns the prompts that
should be open. The application compares that with what is stored: missing prompts are
created (once: a prompt's key is never created twice), prompts no longer needed are resolved
by themselves (the plan shows it was dealt with). Seeds 003 and 004 are why: plans must be
evaluated regularly, and a young person who does not come must be followed up as agreed.

Times in events can be anywhere from year 1 to 9999: arithmetic near those ends saturates
(``_plus``) instead of raising, and a rule that still fails is skipped for that plan by
``desired_prompts`` (told to ``on_error``), so the other rules and the view's update go on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from careplan_shared.vocabulary import InformationForm
from notification_service.domain.prompts import Reason
from notification_service.domain.view import MeetingStatus, PlanView


@dataclass(frozen=True)
class Settings:
    evaluation_grace: timedelta = timedelta(days=14)  # due -> overdue (escalated)
    evaluation_interval: timedelta = timedelta(days=180)  # no evaluation this long -> suggest one
    written_information_after: timedelta = timedelta(days=7)  # oral only -> in writing by then
    consent_warning: timedelta = timedelta(days=14)  # consent expiring within this -> prompt
    no_show_grace: timedelta = timedelta(hours=0)  # after the due time -> escalate
    inactive_after: timedelta = timedelta(days=90)  # no event recorded this long -> plan_inactive
    # who is prompted about a plan that has no coordinator, where the prompt cannot wait for one
    unassigned_recipient: str = "koordinerende-enhet"
    timezone: str = "Europe/Oslo"  # "the same day" is the coordinator's day

    @property
    def tz(self) -> ZoneInfo:
        return _zone(self.timezone)


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@dataclass(slots=True)
class PromptSpec:
    """A prompt the rules want: a value, never changed once made. Not frozen: the rules make
    one for each wanted prompt after every event, and a frozen dataclass's __init__ costs
    several times a plain one's."""

    rule: Reason  # also the reason category shown to the coordinator
    subject: str  # what in the plan it is about; (plan, rule, subject) is the prompt's key
    due_at: datetime
    escalate_at: datetime | None = None
    details: dict[str, Any] = field(default_factory=dict)


Rule = Callable[[PlanView, datetime, Settings], list[PromptSpec]]


# Enum members read once: a member looked up on its class costs more than the rule's own work
# (Python 3.11), and the rules run after every event.
_EVALUATION_DUE, _EVALUATION_SUGGESTED = Reason.EVALUATION_DUE, Reason.EVALUATION_SUGGESTED
_TRIANGLE_MEETING_SUGGESTED, _NO_SHOW_FOLLOW_UP = Reason.TRIANGLE_MEETING_SUGGESTED, Reason.NO_SHOW_FOLLOW_UP
_WRITTEN_INFORMATION_DUE, _CONSENT_EXPIRING = Reason.WRITTEN_INFORMATION_DUE, Reason.CONSENT_EXPIRING
_PLAN_INACTIVE = Reason.PLAN_INACTIVE
_MISSED = MeetingStatus.MISSED
_ARRANGED = frozenset({MeetingStatus.SCHEDULED, MeetingStatus.HELD, MeetingStatus.MISSED})  # as (..) in a tuple
_ORAL = InformationForm.ORAL
_IN_WRITING = frozenset({InformationForm.WRITTEN, InformationForm.BOTH})

EARLIEST = datetime.min.replace(tzinfo=timezone.utc)
LATEST = datetime.max.replace(tzinfo=timezone.utc)


def _plus(moment: datetime, delta: timedelta) -> datetime:
    """moment + delta, saturating at the ends of time instead of raising OverflowError."""
    try:
        return moment + delta
    except OverflowError:
        return LATEST if delta > timedelta(0) else EARLIEST


# The rules run after every event of a plan, and a plan's moments (when a meeting was missed,
# when an evaluation is scheduled) come back each time: their local days are remembered.
# Equal moments (the same instant) have the same local day, whatever their offset.

def _day_start(moment: datetime, s: Settings) -> datetime:
    return _day_start_in(moment, s.timezone)


@lru_cache(maxsize=16384)
def _day_start_in(moment: datetime, zone_name: str) -> datetime:
    zone = _zone(zone_name)
    try:
        local = moment.astimezone(zone)
    except (OverflowError, ValueError):  # the first or last day of time: it has no local day
        return moment
    return datetime.combine(local.date(), time.min, tzinfo=zone)


def _day_end(moment: datetime, s: Settings) -> datetime:
    return _day_end_in(moment, s.timezone)


@lru_cache(maxsize=16384)
def _day_end_in(moment: datetime, zone_name: str) -> datetime:
    return _plus(_plus(_day_start_in(moment, zone_name), timedelta(days=1)), -timedelta(microseconds=1))


@lru_cache(maxsize=1024)
def _local_date(moment: datetime, zone_name: str) -> date:
    return moment.astimezone(_zone(zone_name)).date()


def evaluation_due(view: PlanView, now: datetime, s: Settings) -> list[PromptSpec]:
    """A scheduled evaluation is due on its day; overdue (escalated) after the grace period."""
    if not view.evaluations:
        return []
    return [
        PromptSpec(_EVALUATION_DUE, evaluation_id, e["scheduled_for"],
                   escalate_at=_plus(e["scheduled_for"], s.evaluation_grace),
                   details={"evaluation_id": evaluation_id})
        for evaluation_id, e in sorted(view.evaluations.items())
        if e["held_at"] is None and now >= _day_start(e["scheduled_for"], s)
    ]


def evaluation_suggested(view: PlanView, now: datetime, s: Settings) -> list[PromptSpec]:
    """No evaluation held (or scheduled) for the interval: suggest one."""
    if any(e["held_at"] is None for e in view.evaluations.values()) or view.opened_at is None:
        return []
    anchor = view.last_evaluation_at or view.opened_at
    due = _plus(anchor, s.evaluation_interval)
    if now < due:
        return []
    return [PromptSpec(_EVALUATION_SUGGESTED, f"since {anchor.date().isoformat()}", due,
                       details={"last_evaluation": view.last_evaluation_at.date().isoformat()
                                if view.last_evaluation_at else None})]


def triangle_meeting_suggested(view: PlanView, now: datetime, s: Settings) -> list[PromptSpec]:
    """15-25, both service levels take part, and no triangle meeting is scheduled (or held; a
    missed one is the no-show follow-up's business)."""
    ages = view.age_on(_local_date(now, s.timezone))
    if ages is None or ages[1] < 15 or ages[0] > 25:
        return []
    if view.both_levels_since is None:
        return []
    if any(m["status"] in _ARRANGED for m in view.meetings.values()):
        return []
    return [PromptSpec(_TRIANGLE_MEETING_SUGGESTED, "plan", view.both_levels_since)]


def no_show_follow_up(view: PlanView, now: datetime, s: Settings) -> list[PromptSpec]:
    """A missed triangle meeting: follow up the same day with the strategy agreed in advance."""
    if not view.meetings:
        return []
    prompts = []
    for meeting_id, m in sorted(view.meetings.items()):
        if m["status"] != _MISSED:
            continue
        due = _day_end(m["missed_at"], s)
        prompts.append(PromptSpec(
            _NO_SHOW_FOLLOW_UP, f"{meeting_id}#{m['times_missed']}", due,
            escalate_at=_plus(due, s.no_show_grace),
            details={"meeting_id": meeting_id, "no_show_strategy": m["no_show_strategy"],
                     "place": m["place"], "transport": m["transport"], "companion": m["companion"],
                     "times_missed": m["times_missed"]}))
    return prompts


def written_information_due(view: PlanView, now: datetime, s: Settings) -> list[PromptSpec]:
    """Information given only orally should also be given in writing (seed 004)."""
    if not view.information:
        return []
    prompts = []
    for information_id, info in sorted(view.information.items()):
        if info["form"] != _ORAL:
            continue
        written_later = any(
            other["topic"] == info["topic"] and other["form"] in _IN_WRITING
            and other["given_at"] >= info["given_at"]
            for other in view.information.values())
        if not written_later:
            prompts.append(PromptSpec(_WRITTEN_INFORMATION_DUE, information_id,
                                      _plus(info["given_at"], s.written_information_after),
                                      details={"information_id": information_id, "topic": info["topic"]}))
    return prompts


def consent_expiring(view: PlanView, now: datetime, s: Settings) -> list[PromptSpec]:
    """A relative's consent that ends within the warning period: renew it with the patient, or not."""
    if not view.consents:
        return []
    prompts = []
    for relative_id, c in sorted(view.consents.items()):
        until = c["valid_until"]
        if c["withdrawn"] or until is None:
            continue
        if _plus(until, -s.consent_warning) <= now < until:
            prompts.append(PromptSpec(_CONSENT_EXPIRING, f"{relative_id}@{until.isoformat()}", until,
                                      details={"relative_id": relative_id}))
    return prompts


def plan_inactive(view: PlanView, now: datetime, s: Settings) -> list[PromptSpec]:
    """Nobody has recorded anything in the plan (no event of any type) for ``inactive_after``:
    due at exactly that moment. Any new event moves ``last_event_at``, so this prompt is no
    longer wanted (it resolves itself); the subject is the last event's moment (UTC), so a
    new quiet period after new activity is a new prompt. (A closed plan needs none: desired_prompts.)"""
    last = view.last_event_at
    if last is None:
        return []
    due = _plus(last, s.inactive_after)
    if now < due:
        return []
    return [PromptSpec(_PLAN_INACTIVE, f"since {last.astimezone(timezone.utc).isoformat()}", due,
                       details={"last_event_at": last.isoformat(), "inactive_days": s.inactive_after.days})]


RULES: tuple[Rule, ...] = (
    evaluation_due, evaluation_suggested, triangle_meeting_suggested, no_show_follow_up,
    written_information_due, consent_expiring, plan_inactive,
)

# Reasons whose prompt must reach someone even while the plan has no coordinator: a plan that
# has gone quiet without one is exactly the plan nobody will otherwise look at. The other
# prompts of such a plan wait (recipient None) for the coordinator, as they always have.
NEEDS_A_RECIPIENT = frozenset({Reason.PLAN_INACTIVE})


def recipient_for(view: PlanView, rule: Reason, s: Settings) -> str | None:
    """Who sees a prompt of this plan: its coordinator; without one, the unassigned inbox
    (``unassigned_recipient``) for the reasons that cannot wait, else nobody yet."""
    if view.coordinator_id is not None:
        return view.coordinator_id
    return s.unassigned_recipient if rule in NEEDS_A_RECIPIENT else None


def desired_prompts(view: PlanView, now: datetime, s: Settings,
                    on_error: Callable[[str, Exception], None] | None = None) -> list[PromptSpec]:
    """Every prompt the plan needs now. A closed plan needs none. With ``on_error``, a rule
    that raises is left out for this plan (and told to it); without, the error propagates."""
    if view.closed:
        return []
    prompts: list[PromptSpec] = []
    for rule in RULES:
        try:
            prompts += rule(view, now, s)
        except Exception as e:  # noqa: BLE001 - one rule's failure must not cost the others
            if on_error is None:
                raise
            on_error(rule.__name__, e)
    return prompts


def next_check(view: PlanView, now: datetime, s: Settings) -> datetime | None:
    """The earliest moment after ``now`` at which the rules' answer can change by time alone."""
    if view.closed:
        return None
    moments: list[datetime] = []
    for e in view.evaluations.values():
        if e["held_at"] is None:
            moments.append(_day_start(e["scheduled_for"], s))
    if view.opened_at and not any(e["held_at"] is None for e in view.evaluations.values()):
        moments.append(_plus(view.last_evaluation_at or view.opened_at, s.evaluation_interval))
    for c in view.consents.values():
        if not c["withdrawn"] and c["valid_until"] is not None:
            moments += [_plus(c["valid_until"], -s.consent_warning), c["valid_until"]]
    if view.birth_date:  # turning 15 or 26 changes the triangle-meeting rule
        for years in (15, 26):
            year = view.birth_date.year + years
            if year > LATEST.year:
                continue  # a birthday after the end of time never comes
            try:
                birthday = view.birth_date.replace(year=year)
            except ValueError:  # 29 February
                birthday = view.birth_date.replace(year=year, day=28)
            moments.append(datetime.combine(birthday, time.min, tzinfo=s.tz))
    if view.last_event_at is not None:  # the plan goes quiet by time alone
        moments.append(_plus(view.last_event_at, s.inactive_after))
    future = [m for m in moments if m > now]
    return min(future) if future else None
