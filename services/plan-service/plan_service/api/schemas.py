"""Request and response schemas of the plan API. The OpenAPI document is built from these."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, missing, pre_dump, validate

from plan_service.domain import event_types, values
from plan_service.domain.plan import EARLIEST

# Control characters (C0, DEL, C1) are never stored: they break logs, exports and screens.
# Free text may hold line breaks and tabs; ids and short values are one line.
# Lone surrogates are not text at all: no database or encoder can hold them.
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_IN_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class _Clean(validate.Validator):
    """No control characters, and not blank (only white space)."""

    def __init__(self, pattern: re.Pattern[str], what: str):
        self.pattern, self.what = pattern, what

    def __call__(self, value: str) -> str:
        if self.pattern.search(value):
            raise ValidationError(f"must not contain control or invalid characters ({self.what})")
        if not value.strip():
            raise ValidationError("must not be blank")
        return value


ONE_LINE = _Clean(_CONTROL_IN_LINE, "one line of text")
MULTI_LINE = _Clean(_CONTROL_IN_TEXT, "line breaks and tabs are fine")
ID: dict[str, Any] = dict(required=True, validate=[validate.Length(min=1, max=64), ONE_LINE])
SHORT = [validate.Length(min=1, max=200), ONE_LINE]
TEXT = [validate.Length(min=1, max=4000), MULTI_LINE]
CLOCK_SKEW = timedelta(minutes=5)
# How far ahead a scheduled time, a goal's target date or a consent's end may lie.
SCHEDULE_HORIZON = timedelta(days=5 * 366)
CONSENT_HORIZON = timedelta(days=10 * 366)
CONSENT_START_HORIZON = timedelta(days=366)


def _opt(validator: Any = SHORT) -> dict[str, Any]:
    return dict(load_default=None, allow_none=True, validate=validator)


class StrictBoolean(fields.Boolean):
    """JSON true or false only: not "yes", "1", 1, "on" (marshmallow's Boolean takes those)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if value is True or value is False:
            return value
        raise self.make_error("invalid")


class TimeInRange(validate.Validator):
    """A time from 1900 (EARLIEST) to now + ``ahead`` (clinical times: a few minutes of clock
    skew; scheduled times: a horizon), and, with ``future``, after now."""

    def __init__(self, ahead: timedelta = CLOCK_SKEW, *, future: bool = False):
        self.ahead, self.future = ahead, future

    def __call__(self, value: datetime | date | None) -> Any:
        if value is None:
            return value
        now = datetime.now(timezone.utc)
        earliest: date
        latest: date
        current: date
        if isinstance(value, datetime):
            earliest, latest, current = EARLIEST, now + self.ahead, now
        else:
            # a date is someone's calendar day: allow the day ahead of UTC (e.g. Oslo after 23:00)
            earliest, latest, current = EARLIEST.date(), (now + self.ahead + timedelta(days=1)).date(), now.date()
        if value < earliest:
            raise ValidationError(f"must not be before {earliest.isoformat()}")
        if value > latest:
            raise ValidationError("must not be in the future" if self.ahead <= CLOCK_SKEW
                                  else f"must not be more than {self.ahead.days // 365} years ahead")
        if self.future and value <= current:
            raise ValidationError("must be in the future")
        return value


CLINICAL_TIME = TimeInRange()
SCHEDULED_TIME = TimeInRange(SCHEDULE_HORIZON)


def clinical_time(**kwargs: Any) -> fields.AwareDateTime:
    return fields.AwareDateTime(load_default=None, allow_none=True, validate=CLINICAL_TIME, **kwargs)


class StrictSchema(Schema):
    class Meta:
        ordered = True


class _EventIn(StrictSchema):
    type = fields.String(required=True)
    occurred_at = clinical_time(
        metadata={"description": "When it happened clinically (default: now). From 1900, not "
                                 "before the plan was opened, not in the future."})


_LANGUAGE = validate.Regexp(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")


def _field(spec: event_types.Field) -> fields.Field:
    """The marshmallow field (validation and OpenAPI) for one field of a registered payload."""
    kind, req = spec.kind, spec.required
    meta: dict[str, Any] = {"metadata": {"description": spec.description}} if spec.description else {}
    presence: dict[str, Any] = {"required": True} if req else {"load_default": None, "allow_none": True}
    Kind = event_types.Kind
    if kind is Kind.ID:
        return fields.String(**ID, **meta)
    if kind is Kind.SHORT:
        return fields.String(validate=SHORT, **presence, **meta)
    if kind is Kind.TEXT:
        return fields.String(validate=TEXT, **presence, **meta)
    if kind is Kind.CHOICE:
        return fields.String(validate=validate.OneOf(spec.choices), **presence, **meta)
    if kind is Kind.CHOICES:
        return fields.List(fields.String(validate=validate.OneOf(spec.choices)), required=True,
                           validate=validate.Length(min=1, max=len(spec.choices)), **meta)
    if kind is Kind.NAMES:
        return fields.List(fields.String(validate=SHORT), load_default=list, validate=validate.Length(max=50), **meta)
    if kind is Kind.LANGUAGE:
        return fields.String(load_default="nb", validate=_LANGUAGE, **meta)
    if kind is Kind.BOOL:
        return StrictBoolean(required=True, **meta)
    if kind is Kind.TARGET_DATE:
        return fields.Date(validate=SCHEDULED_TIME, **presence, **meta)
    if kind is Kind.SCHEDULED:
        return fields.AwareDateTime(validate=SCHEDULED_TIME, **presence, **meta)
    if kind is Kind.CONSENT_START:
        return fields.AwareDateTime(validate=TimeInRange(CONSENT_START_HORIZON), **presence, **meta)
    if kind is Kind.CONSENT_END:
        return fields.AwareDateTime(validate=TimeInRange(CONSENT_HORIZON, future=True), **presence, **meta)
    raise ValueError(f"no request field for {kind!r}")


def request_schema(entry: event_types.EventType) -> type[Schema]:
    """The request schema of a registered event type, built from its payload (named after it:
    the OpenAPI document's component)."""
    attrs: dict[str, Any] = {name: _field(spec) for name, spec in entry.payload.items()}
    attrs["__doc__"] = f"A posted {entry.name} event"
    return type(entry.name, (_EventIn,), attrs)


# One request schema per registered, postable event type (domain/event_types.py).
EVENT_SCHEMAS: dict[str, Schema] = {
    t.name: request_schema(t)() for t in event_types.BY_NAME.values() if t.command is not None}
MAX_EVENTS_PER_REQUEST = 100


class _NotCertain(Exception):
    """The fast path cannot vouch for this input: marshmallow decides (and words the errors)."""


class FastLoad:
    """``schema.load(data)`` for the common case at a fraction of marshmallow's cost, with the
    schema's own fields and validators: nothing is defined twice.

    It answers only what it is sure of. A plain ``str`` field (``fields.String``) or a
    ``StrictBoolean`` is checked here by its type and then by the very validator objects
    marshmallow would call; any other field goes through that field's own ``deserialize``.
    Whatever does not pass, or is unusual (an unknown key, null where it is not allowed, a
    missing required field, a str subclass), raises ``_NotCertain``, and the caller loads the
    item with marshmallow, which then gives the result or the field-level errors as always. So
    for any input the outcome is marshmallow's; only the time differs (tested by property).
    """

    _PLAIN, _BOOL, _FIELD = 0, 1, 2

    def __init__(self, schema: Schema):
        fast: list[tuple[str, fields.Field, int, tuple[Any, ...]]] = []
        for name, field in schema.load_fields.items():
            if field.data_key is not None or field.attribute is not None:
                raise ValueError(f"{name}: data_key/attribute not handled by the fast path")
            kind = self._FIELD  # marshmallow's own deserialize
            if not (field.pre_load or field.post_load):
                if type(field) is fields.String:
                    kind = self._PLAIN
                elif type(field) is StrictBoolean:
                    kind = self._BOOL
            fast.append((name, field, kind, tuple(field.validators)))
        if any(schema._hooks.values()) or schema.unknown != RAISE or schema.dict_class is not dict:
            raise ValueError(f"{type(schema).__name__}: hooks or options the fast path does not handle")
        self._fields = tuple(fast)
        self._names = frozenset(name for name, *_ in fast)

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        if not self._names.issuperset(data):
            raise _NotCertain  # unknown keys
        out: dict[str, Any] = {}
        for name, field, kind, validators in self._fields:
            value = data.get(name, missing)
            if kind == self._FIELD:
                try:
                    value = field.deserialize(value, name, data)
                except ValidationError:
                    raise _NotCertain from None
                if value is not missing:
                    out[name] = value
                continue
            # fields.String and StrictBoolean as Field.deserialize treats them (neither overrides it)
            if value is missing:
                if field.required:
                    raise _NotCertain
                default = field.load_default
                if default is not missing:
                    out[name] = default() if callable(default) else default
                continue
            if value is None:
                if not field.allow_none:
                    raise _NotCertain
                out[name] = None
                continue
            if kind == self._PLAIN:
                if type(value) is not str:
                    raise _NotCertain
            elif value is not True and value is not False:
                raise _NotCertain
            for validator in validators:  # as marshmallow's And: each one, its return value unused
                try:
                    validator(value)
                except ValidationError:
                    raise _NotCertain from None
            out[name] = value
        return out


_FAST_LOADS: dict[str, FastLoad] = {name: FastLoad(schema) for name, schema in EVENT_SCHEMAS.items()}


def load_events(body: Any) -> list[tuple[str, dict[str, Any]]]:
    """One event object or a list of them -> [(type, fields)]; ValidationError names fields.

    For a list, errors are keyed by the item's index ("0", "1", ...).
    """
    single = isinstance(body, dict)
    if single:
        items = [body]
    elif isinstance(body, list):
        items = body
        if not 1 <= len(items) <= MAX_EVENTS_PER_REQUEST:
            raise ValidationError({"_body": [f"send 1 to {MAX_EVENTS_PER_REQUEST} events"]})
    else:
        raise ValidationError({"_body": ["expected an event object or a list of event objects"]})
    loaded: list[tuple[str, dict[str, Any]]] = []
    errors: dict[str, Any] = {}
    for index, item in enumerate(items):
        try:
            loaded.append(_load_one(item))
        except ValidationError as e:
            errors[str(index)] = e.messages
    if errors:
        raise ValidationError(errors["0"] if single else errors)
    return loaded


def _load_one(item: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(item, dict):
        raise ValidationError({"_schema": ["an event is a JSON object"]})
    type_ = item.get("type")
    schema = EVENT_SCHEMAS.get(type_) if isinstance(type_, str) else None
    if schema is None:
        hint = ("PlanOpened is recorded by POST /v1/plans" if type_ == "PlanOpened"
                else "one of " + ", ".join(EVENT_SCHEMAS))
        raise ValidationError({"type": [f"unknown event type; {hint}"]})
    assert isinstance(type_, str)  # a schema was found, so type_ is a str
    try:
        fields_ = _FAST_LOADS[type_](item)
    except _NotCertain:
        fields_ = schema.load(item)
    fields_.pop("type")
    return type_, fields_


class OpenPlan(StrictSchema):
    patient_id = fields.String(**ID, metadata={"description": "The patient's id in the EPR (synthetic in tests)"})
    service_level = fields.String(required=True, validate=validate.OneOf(values.SERVICE_LEVELS))
    age_band = fields.String(**_opt(validate.OneOf(values.AGE_BANDS)))
    birth_date = fields.Date(load_default=None, allow_none=True, validate=CLINICAL_TIME)
    occurred_at = clinical_time()


# -- responses ------------------------------------------------------------------------


class EventRef(Schema):
    version = fields.Integer()
    type = fields.String()
    event_id = fields.UUID()


class WriteResult(Schema):
    plan_id = fields.UUID()
    version = fields.Integer()
    events = fields.List(fields.Nested(EventRef))


class _Obj(Schema):
    """Dumps dataclass value objects by attribute."""


class GoalOut(_Obj):
    goal_id = fields.String(); text = fields.String(); expressed_by = fields.String()  # noqa: E702
    target_date = fields.Date(allow_none=True); status = fields.String()  # noqa: E702
    set_at = fields.DateTime(); revisions = fields.Integer()  # noqa: E702


class InformationOut(_Obj):
    information_id = fields.String(); topic = fields.String(); form = fields.String()  # noqa: E702
    description = fields.String(); adapted_how = fields.String(allow_none=True)  # noqa: E702
    given_at = fields.DateTime()


class ParticipantOut(_Obj):
    participant_id = fields.String(); kind = fields.String(); name = fields.String(allow_none=True)  # noqa: E702
    relation = fields.String(allow_none=True); service_level = fields.String(allow_none=True)  # noqa: E702
    added_at = fields.DateTime()


class ConsentOut(_Obj):
    relative_id = fields.String(); scope = fields.List(fields.String())  # noqa: E702
    valid_from = fields.DateTime(); valid_until = fields.DateTime(allow_none=True)  # noqa: E702
    given_at = fields.DateTime(); withdrawn_at = fields.DateTime(allow_none=True)  # noqa: E702
    given_how = fields.String(allow_none=True)


class EvaluationOut(_Obj):
    evaluation_id = fields.String(); scheduled_for = fields.DateTime(); status = fields.String()  # noqa: E702
    held_at = fields.DateTime(allow_none=True); participants = fields.List(fields.String())  # noqa: E702
    outcome = fields.String(allow_none=True); patient_took_part = fields.Boolean(allow_none=True)  # noqa: E702


class TriangleMeetingOut(_Obj):
    meeting_id = fields.String(); status = fields.String()  # noqa: E702
    requested_by = fields.String(allow_none=True); scheduled_for = fields.DateTime(allow_none=True)  # noqa: E702
    place = fields.String(allow_none=True); transport = fields.String(allow_none=True)  # noqa: E702
    companion = fields.String(allow_none=True); no_show_strategy = fields.String(allow_none=True)  # noqa: E702
    times_missed = fields.Integer(); outcome = fields.String(allow_none=True)  # noqa: E702


class WhatMattersOut(_Obj):
    text = fields.String(); language = fields.String(); recorded_at = fields.DateTime()  # noqa: E702


class PlanOut(Schema):
    id = fields.UUID()
    version = fields.Integer()
    patient_id = fields.String()
    opened_at = fields.DateTime()
    updated_at = fields.DateTime(attribute="modified_on")
    service_levels = fields.List(fields.String())
    age_band = fields.String(allow_none=True)
    birth_date = fields.Date(allow_none=True)
    coordinator = fields.Dict(allow_none=True)
    what_matters = fields.List(fields.Nested(WhatMattersOut))
    goals = fields.List(fields.Nested(GoalOut))
    information_given = fields.List(fields.Nested(InformationOut), attribute="information")
    participants = fields.List(fields.Nested(ParticipantOut))
    relative_consents = fields.List(fields.Nested(ConsentOut), attribute="consents")
    evaluations = fields.List(fields.Nested(EvaluationOut))
    triangle_meetings = fields.List(fields.Nested(TriangleMeetingOut))
    closed = fields.Dict(allow_none=True)

    @pre_dump
    def _lists(self, plan: Any, **_: Any) -> dict[str, Any]:
        # Reads get the cached plan itself, which a concurrent fast-forward may extend: each
        # container is copied in one C-level call (atomic under the GIL) before it is dumped.
        data = {name: getattr(plan, name) for name in (
            "id", "version", "patient_id", "opened_at", "modified_on", "service_levels",
            "age_band", "birth_date", "coordinator", "closed")}
        data["what_matters"] = list(plan.what_matters)
        data["service_levels"] = list(plan.service_levels)
        for name in ("goals", "information", "participants", "consents", "evaluations",
                     "triangle_meetings"):
            data[name] = list(getattr(plan, name).values())
        if data["closed"]:
            data["closed"] = {**data["closed"], "at": data["closed"]["at"].isoformat()}
        return data


class PlanQuery(Schema):
    as_of = fields.AwareDateTime(load_default=None, metadata={
        "description": "Show the plan as it was recorded at this time (ISO 8601 with offset); "
                       "404 if it did not exist yet, the current plan for a time in the future"})


# Positions, versions and cursors are 64-bit in every store: larger numbers are refused (422)
# before they reach a database driver.
MAX_INT64 = 2**63 - 1


class TimelineQuery(Schema):
    before = fields.Integer(load_default=None, validate=validate.Range(min=2, max=MAX_INT64),
                            metadata={"description": "Cursor from the previous page's next_before"})
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class TimelineEntry(Schema):
    version = fields.Integer()
    type = fields.String()
    summary = fields.String()
    occurred_at = fields.DateTime()
    recorded_at = fields.DateTime()
    recorded_by = fields.Dict()
    details = fields.Dict()


class TimelinePage(Schema):
    plan_id = fields.UUID()
    items = fields.List(fields.Nested(TimelineEntry))
    next_before = fields.Integer(allow_none=True)


class FeedQuery(Schema):
    after = fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_INT64 - 1))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


class FeedPage(Schema):
    items = fields.List(fields.Dict(), metadata={"description": "Integration events (shared envelope)"})
    last_position = fields.Integer(metadata={"description": "The log's newest position now"})


class AccessEntryOut(Schema):
    id = fields.Integer()
    at = fields.String()
    who = fields.String(metadata={"description": "in plain words, e.g. 'clinician clin-7 (through the EPR system epr-1)'"})
    role = fields.String()
    subject = fields.String()
    on_behalf_of = fields.String(allow_none=True)
    action = fields.String()
    what = fields.String(metadata={"description": "in plain words, e.g. 'read your plan'"})
    result = fields.String()


class AccessLogPage(Schema):
    plan_id = fields.UUID()
    items = fields.List(fields.Nested(AccessEntryOut))
    next_before = fields.Integer(allow_none=True)
