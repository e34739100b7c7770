"""Property: the fast path of loading posted events (schemas.FastLoad) never decides anything
marshmallow would decide otherwise. Whenever it answers, the answer is exactly the schema's
``load``; everything else (errors included) goes to marshmallow, so ``load_events`` gives the
same result or the same field-level errors as marshmallow alone, for any input."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError, fields, validate

from plan_service.api import schemas

NOW = datetime.now(timezone.utc)


class Text(str):
    """A str subclass: marshmallow takes it; the fast path leaves it to marshmallow."""


def candidates(field: fields.Field) -> st.SearchStrategy[Any]:
    """Values near and across every edge of what ``field`` accepts."""
    choices: list[str] = []
    for validator in field.validators:
        choices += list(getattr(validator, "choices", ()) or ())
    inner = getattr(field, "inner", None)
    if inner is not None:
        for validator in inner.validators:
            choices += list(getattr(validator, "choices", ()) or ())
    text = st.one_of(
        st.text(max_size=5), st.text(min_size=60, max_size=70), st.text(min_size=195, max_size=205),
        st.sampled_from(["", " ", "\t", "a\nb", "a\tb", "a\x00b", "a\x7fb", "a\x85b", "\ud800", "x" * 4001,
                         "x" * 4000, "nb", "nn-NO", "en", "EN", "e", "abcd", "ok", " padded ", "\u2028"]),
    )
    when = st.one_of(
        st.sampled_from([NOW - timedelta(days=1), NOW + timedelta(minutes=1), NOW + timedelta(days=30),
                         NOW + timedelta(days=400), NOW + timedelta(days=3000), NOW + timedelta(days=5000),
                         datetime(1899, 12, 31, tzinfo=timezone.utc), datetime(1990, 5, 17, 12, tzinfo=timezone.utc)]
                        ).map(lambda d: d.isoformat()),
        st.sampled_from(["2024-01-01T10:00:00", "2024-01-01", "2024-13-01T00:00:00+00:00", "yesterday",
                         (NOW + timedelta(days=30)).date().isoformat(), date(1900, 1, 1).isoformat()]),
    )
    return st.one_of(
        st.sampled_from(choices) if choices else st.nothing(),
        text, when, st.builds(Text, st.sampled_from(choices or ["x", "ok"])),
        st.none(), st.booleans(), st.integers(-2, 2), st.floats(allow_nan=False), st.just([]),
        st.lists(st.one_of(st.sampled_from(choices) if choices else st.text(max_size=3), st.integers()),
                 max_size=4),
        st.just({}),
    )


def valid(field: fields.Field) -> st.SearchStrategy[Any]:
    """Values ``field`` accepts (as far as its type and validators tell)."""
    if isinstance(field, schemas.StrictBoolean):
        return st.booleans()
    if isinstance(field, fields.List):
        choices = [c for v in field.inner.validators for c in (getattr(v, "choices", ()) or ())]
        if choices:
            return st.lists(st.sampled_from(choices), min_size=1, max_size=len(choices), unique=True)
        return st.lists(st.text(st.characters(categories=["L", "N", "Zs"]), min_size=1, max_size=8).filter(str.strip),
                        max_size=3)
    if isinstance(field, fields.DateTime | fields.Date):
        ranges = [v for v in field.validators if isinstance(v, schemas.TimeInRange)]
        ahead = ranges[0].ahead if ranges else schemas.CLOCK_SKEW
        days = st.integers(1, 300) if ranges and ranges[0].future else st.integers(-3000, 0 if ahead <= schemas.CLOCK_SKEW else 300)
        moment = days.map(lambda d: (NOW + timedelta(days=d)).replace(microsecond=0))
        if isinstance(field, fields.Date):
            return moment.map(lambda m: m.date().isoformat())
        return moment.map(lambda m: m.astimezone(timezone(timedelta(hours=1))).isoformat())
    choices = [c for v in field.validators for c in (getattr(v, "choices", ()) or ())]
    if choices:
        return st.sampled_from(choices)
    if any(isinstance(v, validate.Regexp) for v in field.validators):
        return st.sampled_from(["nb", "nn", "en", "se", "nn-NO", "en-GB"])
    return st.text(st.characters(categories=["L", "N", "P", "Zs"]), min_size=1, max_size=30).filter(str.strip)


@st.composite
def items(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    name = draw(st.sampled_from(sorted(schemas.EVENT_SCHEMAS)))
    schema = schemas.EVENT_SCHEMAS[name]
    item: dict[str, Any] = {"type": name}
    for field_name, field in schema.load_fields.items():
        if field_name == "type":
            continue
        roll = draw(st.integers(0, 19))
        if roll < 15:
            item[field_name] = draw(valid(field))
        elif roll < 17:
            item[field_name] = draw(candidates(field))
        # else: absent
    if draw(st.integers(0, 19)) == 0:
        item[draw(st.sampled_from(["extra", "recorded_by", "version"]))] = draw(st.text(max_size=3))
    if draw(st.integers(0, 29)) == 0:
        del item["type"]
    return name, item


def marshmallow(name: str, item: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "loaded", schemas.EVENT_SCHEMAS[name].load(dict(item))
    except ValidationError as e:
        return "invalid", e.messages


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items())
def test_the_fast_path_answers_only_as_marshmallow_would(case):
    name, item = case
    expected = marshmallow(name, item)
    try:
        fast = schemas._FAST_LOADS[name](dict(item))
    except schemas._NotCertain:
        event(f"marshmallow: {expected[0]}")
        return
    event("fast path")
    assert ("loaded", fast) == expected
    assert list(fast) == list(expected[1]), "the same fields in the same order"


def _not_certain(_: dict[str, Any]) -> dict[str, Any]:
    raise schemas._NotCertain


def outcome(body: Any) -> tuple[str, Any]:
    try:
        return "loaded", schemas.load_events(body)
    except ValidationError as e:
        return "invalid", e.messages


@settings(max_examples=300, deadline=None)
@given(st.lists(items(), min_size=1, max_size=3), st.booleans())
def test_load_events_gives_marshmallow_s_answer(cases, as_list):
    body: Any = [item for _, item in cases] if as_list else cases[0][1]
    with patch.dict(schemas._FAST_LOADS, dict.fromkeys(schemas._FAST_LOADS, _not_certain)):
        expected = outcome(body)  # marshmallow alone
    assert outcome(body) == expected


def test_the_fast_path_takes_the_common_case():
    """It is there to be used: a plain event, with or without occurred_at, is answered by it."""
    item = {"type": "InformationGiven", "information_id": "i1", "topic": "rights", "form": "oral",
            "description": "Retten til individuell plan"}
    assert schemas._FAST_LOADS["InformationGiven"](dict(item)) == schemas.EVENT_SCHEMAS["InformationGiven"].load(item)
    item["occurred_at"] = (NOW - timedelta(hours=1)).isoformat()
    assert schemas._FAST_LOADS["InformationGiven"](dict(item)) == schemas.EVENT_SCHEMAS["InformationGiven"].load(item)
    goal = {"type": "GoalSet", "goal_id": "g1", "text": "Jobbe", "expressed_by": "patient"}
    assert schemas._FAST_LOADS["GoalSet"](dict(goal)) == schemas.EVENT_SCHEMAS["GoalSet"].load(goal)


@pytest.mark.parametrize("item", [
    {"type": "InformationGiven", "information_id": "i1", "topic": "rights", "form": "oral", "description": " "},
    {"type": "InformationGiven", "information_id": "i\x00", "topic": "rights", "form": "oral", "description": "d"},
    {"type": "InformationGiven", "information_id": "i1", "topic": "nope", "form": "oral", "description": "d"},
    {"type": "InformationGiven", "information_id": "i1", "topic": "rights", "form": "oral"},
    {"type": "InformationGiven", "information_id": "i1", "topic": "rights", "form": "oral", "description": "d", "x": 1},
    {"type": "InformationGiven", "information_id": None, "topic": "rights", "form": "oral", "description": "d"},
    {"type": "InformationGiven", "information_id": 7, "topic": "rights", "form": "oral", "description": "d"},
    {"type": "InformationGiven", "information_id": "i1", "topic": "rights", "form": "oral", "description": "d",
     "occurred_at": "2999-01-01T00:00:00+00:00"},
])
def test_every_refusal_is_marshmallow_s_with_its_field_named(item):
    with pytest.raises(ValidationError) as fast:
        schemas.load_events(item)
    with pytest.raises(ValidationError) as slow:
        schemas.EVENT_SCHEMAS["InformationGiven"].load(item)
    assert fast.value.messages == slow.value.messages
