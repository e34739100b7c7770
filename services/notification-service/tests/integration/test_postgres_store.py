"""The prompt store on real PostgreSQL (the production store): the same behaviour as SQLite."""

from __future__ import annotations

from datetime import timedelta

import pytest

from notification_service.adapters.store import PostgresStore, SQLiteStore
from notification_service.application.consumer import Record as R
from notification_service.application.service import Notifications
from notification_service.domain.rules import Settings

pytestmark = pytest.mark.integration


def conninfo(env: dict[str, str]) -> str:
    return (f"host={env['POSTGRES_HOST']} port={env['POSTGRES_PORT']} dbname={env['POSTGRES_DBNAME']} "
            f"user={env['POSTGRES_USER']} password={env['POSTGRES_PASSWORD']} "
            f"options=-csearch_path={env['POSTGRES_SCHEMA']}")


@pytest.fixture(params=["sqlite", "postgres"])
def make_store(request, tmp_path):
    stores = []

    def make():
        if request.param == "postgres":
            store = PostgresStore(conninfo(request.getfixturevalue("postgres_env")))
        else:
            store = SQLiteStore(tmp_path / "prompts.sqlite")
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


def scenario(s, clock):
    return [
        s.wire("PlanOpened", service_level="municipal", age_band="18-25", birth_date=None),
        s.wire("CoordinatorAssigned", coordinator_id="k1", service_level="specialist"),
        s.wire("TriangleMeetingScheduled", meeting_id="m1", scheduled_for=clock.now(), place="x",
               transport=None, companion=None, no_show_strategy="Ring"),
        s.wire("TriangleMeetingMissed", meeting_id="m1"),
        s.wire("RelativeConsentGiven", relative_id="r1", scope=["goals"], valid_from=None,
               valid_until=clock.now() + timedelta(days=20)),
    ]


def test_events_prompts_escalation_and_restart(make_store, stream, clock):
    service = Notifications(make_store(), Settings(), clock, channels=("webhook",))
    events = scenario(stream(), clock)
    records = [R(0, e["position"], e) for e in events]
    service.handle_batch("feed", records)
    service.handle_batch("feed", records)  # redelivered: nothing changes
    assert [p.rule for p in service.inbox("k1", "all")] == ["triangle_meeting_suggested", "no_show_follow_up"]
    assert service.handle("kafka", 0, 0, b"poison").status == "dead_letter"
    clock.advance(timedelta(days=7))
    restarted = Notifications(make_store(), Settings(), clock, channels=("webhook",))
    assert restarted.tick() == {"checked": 1, "escalated": 1}
    assert restarted.tick() == {"checked": 0, "escalated": 0}
    open_ = restarted.inbox("k1")
    assert [p.rule for p in open_] == ["no_show_follow_up", "consent_expiring"]
    assert open_[0].escalated_at is not None
    assert restarted.acknowledge(open_[1].id, "k1").status == "acknowledged"
    assert restarted.positions("feed") == {0: events[-1]["position"]}
    assert len(restarted.dead_letters()) == 1
