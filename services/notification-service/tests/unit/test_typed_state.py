"""Typed state: each vocabulary written once, as a StrEnum whose members are the strings that
were stored and sent before (so nothing stored or on the wire changes)."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

import pytest

from careplan_shared.vocabulary import OLDEST_AGE
from notification_service.adapters.sources import KafkaSource
from notification_service.domain import rules
from notification_service.domain.prompts import PromptStatus, Reason
from notification_service.domain.view import MeetingStatus, PlanView, apply

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def test_each_rule_is_named_by_its_reason():
    assert [rule.__name__ for rule in rules.RULES] == [reason.value for reason in Reason]


def test_the_strings_stored_and_sent_are_unchanged():
    assert [s.value for s in PromptStatus] == ["open", "acknowledged", "resolved"]
    assert [s.value for s in MeetingStatus] == ["requested", "scheduled", "held", "missed"]
    assert json.dumps({"status": PromptStatus.OPEN, "rule": Reason.NO_SHOW_FOLLOW_UP}) == (
        '{"status": "open", "rule": "no_show_follow_up"}')


def test_a_meetings_status_is_typed_in_the_view_and_plain_text_in_its_json(stream):
    s = stream()
    view = PlanView(str(s.plan_id))
    for event in (s.event("PlanOpened", service_level="municipal", age_band="18-25", birth_date=None),
                  s.event("TriangleMeetingRequested", meeting_id="m1"),
                  s.event("TriangleMeetingScheduled", meeting_id="m1", scheduled_for=T0, place="x", transport=None,
                          companion=None, no_show_strategy="Ring"),
                  s.event("TriangleMeetingMissed", meeting_id="m1")):
        apply(view, event)
    assert view.meetings["m1"]["status"] is MeetingStatus.MISSED
    stored = json.loads(json.dumps(view.to_json()))
    assert stored["meetings"]["m1"]["status"] == "missed"
    assert PlanView.from_json(stored).meetings["m1"]["status"] is MeetingStatus.MISSED
    [prompt] = [p for p in rules.desired_prompts(view, T0, rules.Settings()) if p.rule == Reason.NO_SHOW_FOLLOW_UP]
    assert prompt.rule is Reason.NO_SHOW_FOLLOW_UP


@pytest.mark.parametrize("band, ages", [("0-14", (0, 14)), ("15-17", (15, 17)), ("18-25", (18, 25)),
                                        ("26-64", (26, 64)), ("65+", (65, OLDEST_AGE)), (None, None),
                                        ("unknown", None)])
def test_the_age_range_of_a_band_comes_from_the_shared_vocabulary(band, ages):
    assert PlanView("p1", age_band=band).age_on(T0.date()) == ages


class Failing:
    def commit_async(self):
        raise ConnectionError("broker gone")

    def close(self, autocommit):
        raise ConnectionError("broker gone, details that must not be logged")


def test_a_kafka_consumer_that_fails_to_close_is_counted_and_logged_not_hidden(caplog):
    source = KafkaSource("127.0.0.1:1", "topic")
    source._consumer = Failing()
    with caplog.at_level(logging.INFO, logger="careplan.sources"):
        source.processed([])
        source.close()
    assert (source.commit_failures, source.close_failures) == (1, 1)
    assert source._consumer is None  # the next fetch connects again
    assert [r.error_type for r in caplog.records] == ["ConnectionError", "ConnectionError"]
    assert "details" not in caplog.text
