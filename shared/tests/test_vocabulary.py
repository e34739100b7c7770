"""The contract's vocabularies are written once (careplan_shared.vocabulary) and the wire
schemas validate with exactly them; their strings never change under a version."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest

from careplan_shared import vocabulary as v
from careplan_shared.events import IntegrationEvent, decode_event, encode_event, v1


def test_the_wire_strings_are_those_of_contract_v1():
    assert v.AGE_BANDS == ("0-14", "15-17", "18-25", "26-64", "65+")
    assert v.SERVICE_LEVELS == ("municipal", "specialist")
    assert v.EXPRESSED_BY == ("patient", "clinician")
    assert v.INFORMATION_TOPICS == ("offered_help", "rights", "choices", "other")
    assert v.INFORMATION_FORMS == ("oral", "written", "both")
    assert v.PARTICIPANT_KINDS == ("relative", "professional")
    assert v.CONSENT_SCOPES == ("what_matters", "goals", "information", "participants", "evaluations", "meetings")
    assert all(type(word) is str for words in (v.AGE_BANDS, v.SERVICE_LEVELS, v.CONSENT_SCOPES) for word in words)


def test_a_member_is_its_wire_string():
    assert v.AgeBand.AGE_65_PLUS == "65+" and f"{v.AgeBand.AGE_18_25}" == "18-25"
    assert {v.ServiceLevel.MUNICIPAL: 1}["municipal"] == 1


def test_the_age_bands_cover_every_age_once_in_order():
    years = [band.years for band in v.AgeBand]
    assert years[0][0] == 0 and years[-1][1] == v.OLDEST_AGE
    assert all(last + 1 == nxt for (_, last), (nxt, _) in zip(years, years[1:], strict=False))


@pytest.mark.parametrize("age, band", [(0, "0-14"), (14, "0-14"), (15, "15-17"), (17, "15-17"), (18, "18-25"),
                                       (25, "18-25"), (26, "26-64"), (64, "26-64"), (65, "65+"), (130, "65+"),
                                       (-1, "0-14"), (v.OLDEST_AGE + 1, "65+")])
def test_the_band_of_an_age(age, band):
    assert v.AgeBand.of_age(age) == band
    if 0 <= age <= v.OLDEST_AGE:
        first, last = v.AgeBand.of_age(age).years
        assert first <= age <= last


def test_the_wire_schemas_validate_with_the_vocabulary():
    assert v1.AGE_BANDS is v.AGE_BANDS and v1.SERVICE_LEVELS is v.SERVICE_LEVELS
    choices = {f"{event_type}.{name}": field.validate.choices for event_type, schema in v1.SCHEMAS.items()
               for name, field in schema().fields.items() if getattr(field.validate, "choices", None)}
    assert choices == {
        "PlanOpened.service_level": v.SERVICE_LEVELS, "PlanOpened.age_band": v.AGE_BANDS,
        "CoordinatorAssigned.service_level": v.SERVICE_LEVELS, "GoalSet.expressed_by": v.EXPRESSED_BY,
        "InformationGiven.topic": v.INFORMATION_TOPICS, "InformationGiven.form": v.INFORMATION_FORMS,
        "ParticipantAdded.kind": v.PARTICIPANT_KINDS, "ParticipantAdded.service_level": v.SERVICE_LEVELS,
    }


@pytest.mark.parametrize("band", list(v.AgeBand))
def test_every_band_crosses_the_wire(band):
    at = datetime(2026, 3, 2, tzinfo=timezone.utc)
    event = IntegrationEvent(uuid.uuid4(), "PlanOpened", 1, uuid.uuid4(), 1, 1, at, at,
                             {"service_level": v.ServiceLevel.MUNICIPAL, "age_band": band, "birth_date": None})
    assert decode_event(encode_event(event)).payload["age_band"] == band.value
