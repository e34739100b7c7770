"""The prompt store on real PostgreSQL (the production store): the same behaviour as SQLite."""

from __future__ import annotations

from datetime import timedelta

import pytest

from notification_service.adapters.crypto import Cipher
from notification_service.adapters.store import PostgresStore, SQLiteStore
from notification_service.application.service import Notifications
from notification_service.domain.records import Record as R
from notification_service.domain.rules import Settings

pytestmark = pytest.mark.integration
KEY = Cipher(bytes(range(32)))


def conninfo(env: dict[str, str]) -> str:
    return (f"host={env['POSTGRES_HOST']} port={env['POSTGRES_PORT']} dbname={env['POSTGRES_DBNAME']} "
            f"user={env['POSTGRES_USER']} password={env['POSTGRES_PASSWORD']} "
            f"options=-csearch_path={env['POSTGRES_SCHEMA']}")


@pytest.fixture(params=["sqlite", "postgres"])
def make_store(request, tmp_path):
    stores = []

    def make():
        if request.param == "postgres":
            store = PostgresStore(conninfo(request.getfixturevalue("postgres_env")), cipher=KEY)
        else:
            store = SQLiteStore(tmp_path / "prompts.sqlite", KEY)
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


def test_a_bad_event_moves_past_and_retry_resolves_it(make_store, stream, clock, monkeypatch):
    from notification_service.domain import view as view_module

    service = Notifications(make_store(), Settings(), clock)
    real = view_module._HANDLERS["CoordinatorAssigned"]

    def broken(*args):
        raise RuntimeError("a bug")

    monkeypatch.setitem(view_module._HANDLERS, "CoordinatorAssigned", broken)
    events = scenario(stream(), clock)
    outcomes = service.handle_batch("feed", [R(0, e["position"], e) for e in events])
    assert [o.status for o in outcomes] == ["processed", "dead_letter", "processed", "processed", "processed"]
    with service.store.transaction() as tx:
        assert tx.count_dead_letters() == 1
    monkeypatch.setitem(view_module._HANDLERS, "CoordinatorAssigned", real)
    assert service.retry_dead_letters() == {"retried": 1, "resolved": 1, "still_failing": 0}
    [prompt] = service.inbox("k1")  # (no suggestion: a meeting was already scheduled)
    assert prompt.rule == "no_show_follow_up" and prompt.details["no_show_strategy"] == "Ring"
    with service.store.transaction() as tx:
        assert tx.count_dead_letters() == 0 and tx.count_dead_letters("resolved") == 1
        tx._q("SELECT state FROM plan_views")
        assert all(row[0].startswith("enc:v1:") for row in tx._cur.fetchall())


def test_an_existing_postgres_store_gets_the_new_columns(postgres_env):
    import psycopg

    info = conninfo(postgres_env)
    with psycopg.connect(info, autocommit=True) as db:  # the dead_letters table as it first shipped
        db.execute("CREATE TABLE dead_letters (id TEXT PRIMARY KEY, source TEXT NOT NULL, part INTEGER NOT NULL, "
                   "position BIGINT NOT NULL, event_id TEXT, reason TEXT NOT NULL, payload TEXT NOT NULL, "
                   "created_at TEXT NOT NULL)")
        db.execute("INSERT INTO dead_letters VALUES ('d1', 'feed', 0, 7, NULL, 'undecodable: x', 'not json', "
                   "'2026-03-01T00:00:00.000000+00:00')")
    for _ in range(2):  # a second start changes nothing
        store = PostgresStore(info, cipher=KEY)
        with store.transaction() as tx:
            assert {"status", "resolved_at"} <= tx.columns("dead_letters")
            assert tx.count_dead_letters() == 1
            assert tx.open_dead_letters(10)[0]["payload"] == "not json"
        store.close()
