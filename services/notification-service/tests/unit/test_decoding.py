"""Property: the fast path in front of decode_event (application/decoding.py) never decides
anything decode_event would decide otherwise. Whenever it answers, the event is exactly
decode_event's, down to each value's type and the payload's key order; for everything else it
declines, and the service's _decode gives decode_event's event or its Undecodable reason."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError, fields

from careplan_shared.events import PAYLOAD_SCHEMAS, UnknownEventType, decode_event, encode_event, payload_schema
from careplan_shared.events.envelope import IntegrationEvent, event_id_for
from notification_service.application import decoding
from notification_service.application.service import Undecodable, _decode, _decode_checked

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
TYPES = sorted(name for name, _ in PAYLOAD_SCHEMAS)


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (True == 1, but not here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, IntegrationEvent):
        return all(same(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)
    if isinstance(a, datetime):
        return a == b and a.utcoffset() == b.utcoffset()
    return bool(a == b)


def field_value(field: fields.Field) -> st.SearchStrategy[Any]:
    """A value the field accepts, as JSON carries it."""
    choices = [c for v in field.validators for c in getattr(v, "choices", ())]
    if choices:
        return st.sampled_from(choices)
    if isinstance(field, fields.AwareDateTime):
        return st.datetimes(timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=2))])).map(
            lambda d: d.isoformat())
    if isinstance(field, fields.Date):
        return st.dates().map(date.isoformat)
    if isinstance(field, fields.Boolean):
        return st.booleans()
    if isinstance(field, fields.List):
        return st.lists(st.text(max_size=5), max_size=3)
    return st.text(min_size=1, max_size=10)


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    event_type = draw(st.sampled_from(TYPES))
    schema = payload_schema(event_type)
    payload = {}
    for name, field in schema.load_fields.items():
        if field.required or draw(st.booleans()):
            payload[name] = None if field.allow_none and draw(st.booleans()) else draw(field_value(field))
    plan_id = uuid.UUID(int=draw(st.integers(0, 2**128 - 1)))
    version = draw(st.integers(1, 2**31 - 1))
    at = T0.isoformat()
    return {"event_id": str(event_id_for(plan_id, version)), "event_type": event_type, "schema_version": 1,
            "plan_id": str(plan_id), "plan_version": version, "position": draw(st.integers(1, 10**12)),
            "occurred_at": at, "recorded_at": at, "payload": payload}


ODD = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.just(2**31), st.just(2**64 + 1), st.floats(allow_nan=False),
    st.just(1.0), st.text(max_size=4), st.builds(list), st.builds(dict), st.lists(st.integers(), max_size=2),
    st.sampled_from(["", "x" * 65, "\ud800", "2026-03-02T09:00:00", "2026-03-02T09:00:00Z", "2026-03-02",
                     "2026-3-2", "2026-03-02 09:00:00+01:00", "2026-03-02T09:00:00.1234567+00:00",
                     "{12345678-1234-5678-1234-567812345678}", "urn:uuid:12345678-1234-5678-1234-567812345678",
                     "12345678123456781234567812345678", "12345678-1234-5678-1234-56781234567G", "true", "1",
                     "yes", "municipal", "Municipal", "18-25", "oral", "relative", "v1", " k1", "k1 "]),
)


@st.composite
def mangled_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event with one to three things changed: a value, a key dropped or added, in
    the envelope or in the payload."""
    data = draw(valid_events())
    for _ in range(draw(st.integers(1, 3))):
        target = data["payload"] if draw(st.booleans()) and isinstance(data.get("payload"), dict) else data
        how = draw(st.sampled_from(["value", "drop", "add"]))
        keys = sorted(target)
        if how == "value" and keys:
            target[draw(st.sampled_from(keys))] = draw(ODD)
        elif how == "drop" and keys:
            del target[draw(st.sampled_from(keys))]
        else:
            target[draw(st.sampled_from(["extra", "event_type", "meeting_id", "kind", "scope"]))] = draw(ODD)
    return data


def slow(data: Any) -> Any:
    try:
        return decode_event(data)
    except (ValidationError, UnknownEventType, ValueError, TypeError) as e:
        return e


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(valid_events(), mangled_events()))
def test_the_fast_path_answers_only_what_decode_event_answers(data):
    fast = decoding.fast_decode(data)
    truth = slow(data)
    event("fast" if fast is not None else "declined")
    if fast is not None:
        assert isinstance(truth, IntegrationEvent), truth
        assert same(fast, truth)


@settings(max_examples=200, deadline=None)
@given(valid_events())
def test_every_valid_event_takes_the_fast_path(data):
    fast = decoding.fast_decode(data)
    assert fast is not None and same(fast, decode_event(data))


def outcome(decode: Any, raw: Any) -> Any:
    try:
        return decode(raw)
    except Undecodable as e:
        return f"undecodable: {e}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(valid_events(), mangled_events()),
       st.sampled_from(["orjson", "json", "text", "dict", "nan", "big", "surrogate", "bad-utf8", "list"]))
def test_decoding_bytes_text_or_objects_gives_what_json_and_decode_event_give(data, how):
    if how == "orjson":
        raw: Any = orjson.dumps(data) if _orjson_can(data) else json.dumps(data).encode()
    elif how == "json":
        raw = json.dumps(data).encode()
    elif how == "text":
        raw = json.dumps(data)
    elif how == "dict":
        raw = data
    elif how == "nan":
        raw = json.dumps({**data, "plan_version": float("nan")}).encode()
    elif how == "big":
        raw = json.dumps({**data, "position": 2**70}).encode()
    elif how == "surrogate":
        raw = json.dumps({**data, "event_type": "\ud800"}).encode()
    elif how == "bad-utf8":
        raw = json.dumps(data).encode()[:-1] + b"\xff}"
    else:
        raw = json.dumps([data]).encode()
    fast, truth = outcome(_decode, raw), outcome(_decode_checked, raw)
    if isinstance(truth, str):
        assert fast == truth
    else:
        assert same(fast, truth)


def _orjson_can(data: Any) -> bool:
    try:
        orjson.dumps(data)
    except TypeError:
        return False
    return True


def test_what_plan_service_sends_decodes_fast():
    plan_id = uuid.uuid4()
    for name in TYPES:
        schema = payload_schema(name)
        payload = {k: "x" for k, f in schema.load_fields.items() if f.required and isinstance(f, fields.String)}
        e = IntegrationEvent(event_id_for(plan_id, 1), name, 1, plan_id, 1, 7, T0, T0, payload)
        try:
            wire = encode_event(e)
        except ValidationError:
            continue  # a payload "x" does not satisfy (a choice, a date): covered by the properties above
        assert same(decoding.fast_decode(orjson.loads(orjson.dumps(wire))), decode_event(wire))


def test_a_schema_it_does_not_know_is_left_to_decode_event():
    from marshmallow import Schema

    class Odd(Schema):
        n = fields.Float(required=True)

    with pytest.raises(decoding._Unsupported):
        decoding.compile_schema(Odd())
