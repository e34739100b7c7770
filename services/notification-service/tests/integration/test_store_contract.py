"""The store contract (application.ports.PromptStore / StoreTransaction): the same tests against
every implementation: the in-memory fake the unit tests use, SQLite, and PostgreSQL (from
CAREPLAN_TEST_DATABASE_URL: skipped without it, a failure in CI)."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from notification_service.adapters.crypto import Cipher
from notification_service.adapters.memory_store import DuplicateKey, MemoryStore
from notification_service.adapters.store import PostgresStore, SQLiteStore
from notification_service.domain.dead_letters import DeadLetterStatus
from notification_service.domain.deliveries import DeliveryKind, DeliveryStatus
from notification_service.domain.prompts import Prompt, PromptStatus, Reason

pytestmark = pytest.mark.integration

KEY = Cipher(bytes(range(32)))
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)
OSLO = timezone(timedelta(hours=1))


def conninfo(env: dict[str, str]) -> str:
    return (f"host={env['POSTGRES_HOST']} port={env['POSTGRES_PORT']} dbname={env['POSTGRES_DBNAME']} "
            f"user={env['POSTGRES_USER']} password={env['POSTGRES_PASSWORD']} "
            f"options=-csearch_path={env['POSTGRES_SCHEMA']}")


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "postgres":
        made = PostgresStore(conninfo(request.getfixturevalue("postgres_env")), cipher=KEY)
    elif request.param == "sqlite":
        made = SQLiteStore(tmp_path / "prompts.sqlite", KEY)
    else:
        made = MemoryStore()
    yield made
    made.close()


def prompt(plan_id: str = "p1", rule: Reason = Reason.EVALUATION_DUE, subject: str = "e1", recipient: str = "k1",
           due_at: datetime = T0, escalate_at: datetime | None = None, **details: object) -> Prompt:
    return Prompt(uuid.uuid4().hex, plan_id, rule, subject, recipient, PromptStatus.OPEN, due_at, escalate_at,
                  None, T0, None, None, dict(details))


# -- transactions ---------------------------------------------------------------------------

def test_a_transaction_is_kept_whole_or_not_at_all(store):
    with store.transaction() as tx:
        tx.set_position("feed", 0, 5)
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.set_position("feed", 0, 9)
        tx.insert_prompt(prompt())
        raise RuntimeError("the use case failed")
    with store.transaction() as tx:
        assert tx.position("feed", 0) == 5 and tx.count_prompts() == 0


def test_a_savepoint_undoes_its_part_only_and_the_transaction_goes_on(store):
    """On PostgreSQL a failed statement aborts the whole transaction unless it ran in a savepoint:
    the clock's turn over many plans relies on this (one plan's failure costs that plan only)."""
    first = prompt()
    with store.transaction() as tx:
        tx.insert_prompt(first)
        with pytest.raises((DuplicateKey, sqlite3.IntegrityError, psycopg.errors.UniqueViolation)):
            with tx.savepoint():
                tx.set_position("feed", 0, 99)
                tx.insert_prompt(prompt(subject=first.subject))  # the same key: the store refuses it
        tx.set_position("feed", 0, 7)  # the transaction is still usable
    with store.transaction() as tx:
        assert tx.position("feed", 0) == 7 and tx.count_prompts() == 1


def test_writes_are_seen_within_their_transaction(store):
    with store.transaction() as tx:
        p = prompt()
        tx.insert_prompt(p)
        tx.acknowledge(p.id, T0)
        assert tx.prompt(p.id).status == PromptStatus.ACKNOWLEDGED


def test_concurrent_transactions_keep_each_others_writes(store):
    def advance(part: int) -> None:
        for position in range(1, 11):
            with store.transaction() as tx:
                tx.set_position("feed", part, position)
                tx.save_view(f"plan-{part}-{position}", 1, {}, None)

    threads = [threading.Thread(target=advance, args=(part,)) for part in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with store.transaction() as tx:
        assert tx.positions("feed") == {0: 10, 1: 10, 2: 10}
        assert all(tx.load_view(f"plan-{part}-{position}") == {} for part in range(3) for position in range(1, 11))


def test_a_prompt_read_back_is_a_copy(store):
    p = prompt(strategy="Ring")
    with store.transaction() as tx:
        tx.insert_prompt(p)
    with store.transaction() as tx:
        tx.prompt(p.id).details["strategy"] = "changed by the caller"
    with store.transaction() as tx:
        assert tx.prompt(p.id).details == {"strategy": "Ring"}


# -- positions ------------------------------------------------------------------------------

def test_positions_per_source_and_part(store):
    with store.transaction() as tx:
        assert tx.position("kafka", 0) is None and tx.positions("kafka") == {}
        tx.set_position("kafka", 0, 10)
        tx.set_position("kafka", 3, 2**40)  # Kafka offsets beyond 32 bits
        tx.set_position("feed", 0, 7)
        tx.set_position("kafka", 0, 11)
    with store.transaction() as tx:
        assert tx.positions("kafka") == {0: 11, 3: 2**40}
        assert tx.position("kafka", 3) == 2**40 and tx.position("feed", 0) == 7 and tx.position("feed", 1) is None


# -- plan views -----------------------------------------------------------------------------

def test_views_are_saved_whole_and_come_due_in_order(store):
    state = {"plan_id": "p1", "meetings": {"m1": {"status": "missed", "place": "Kafé Tøyen"}}, "skipped": [[2, 3]]}
    with store.transaction() as tx:
        assert tx.load_view("p1") is None
        tx.save_view("p1", 4, state, T0 + 2 * HOUR)
        tx.save_view("p2", 1, {"plan_id": "p2"}, (T0 + HOUR).astimezone(OSLO))  # compared as moments
        tx.save_view("p3", 1, {"plan_id": "p3"}, None)  # nothing time-based: never due
        tx.save_view("p4", 1, {"plan_id": "p4"}, T0 + 3 * HOUR)
    with store.transaction() as tx:
        assert tx.load_view("p1") == state
        assert tx.views_due(T0, 10) == []
        assert tx.views_due(T0 + HOUR, 10) == ["p2"]
        assert tx.views_due(T0 + 5 * HOUR, 10) == ["p2", "p1", "p4"]
        assert tx.views_due(T0 + 5 * HOUR, 2) == ["p2", "p1"]
        tx.postpone_check("p2", T0 + 4 * HOUR)
        tx.save_view("p1", 5, {**state, "closed": True}, None)  # a save replaces state and next check
    with store.transaction() as tx:
        assert tx.views_due(T0 + 5 * HOUR, 10) == ["p4", "p2"]
        assert tx.load_view("p1")["closed"] is True


def test_moments_at_the_ends_of_time_are_kept_and_ordered(store):
    first, last = datetime(1, 1, 1, tzinfo=timezone.utc), datetime(9999, 12, 31, 23, tzinfo=timezone.utc)
    with store.transaction() as tx:
        tx.save_view("late", 1, {}, last)
        tx.save_view("early", 1, {}, first)
        tx.insert_prompt(p := prompt(due_at=first, escalate_at=last))
    with store.transaction() as tx:
        assert tx.views_due(T0, 10) == ["early"]
        assert (tx.prompt(p.id).due_at, tx.prompt(p.id).escalate_at) == (first, last)


# -- prompts --------------------------------------------------------------------------------

def test_prompts_by_plan_and_by_id_as_they_were_stored(store):
    a = prompt(subject="e1", due_at=T0.astimezone(OSLO), strategy="Ring")
    b = prompt(rule=Reason.NO_SHOW_FOLLOW_UP, subject="m1#1", escalate_at=T0 + HOUR)
    other = prompt(plan_id="p2")
    with store.transaction() as tx:
        for p in (a, b, other):
            tx.insert_prompt(p)
    with store.transaction() as tx:
        assert sorted(p.id for p in tx.prompts_of_plan("p1")) == sorted([a.id, b.id])
        assert tx.prompt(a.id) == a  # times come back in UTC: equal as moments
        read = tx.prompt(b.id)
        assert read == b and read.rule is Reason.NO_SHOW_FOLLOW_UP and read.status is PromptStatus.OPEN
        assert read.due_at.utcoffset() == timedelta(0)
        assert tx.prompt("no-such-prompt") is None and tx.count_prompts() == 3


def test_a_prompts_key_is_unique(store):
    with store.transaction() as tx:
        tx.insert_prompt(prompt())
    with pytest.raises((DuplicateKey, sqlite3.IntegrityError, psycopg.IntegrityError)), store.transaction() as tx:
        tx.insert_prompt(prompt())  # the same (plan, rule, subject) under a new id
    with store.transaction() as tx:
        assert tx.count_prompts() == 1


def test_recipient_and_details_change(store):
    p = prompt(strategy=None)
    with store.transaction() as tx:
        tx.insert_prompt(p)
        tx.set_recipient(p.id, "k2")
        tx.set_details(p.id, {"strategy": "Ring"})
    with store.transaction() as tx:
        read = tx.prompt(p.id)
        assert (read.recipient, read.details) == ("k2", {"strategy": "Ring"})
        tx.set_recipient(p.id, None)
    with store.transaction() as tx:
        assert tx.prompt(p.id).recipient is None and tx.inbox("k2", tuple(PromptStatus), 10) == []


def test_the_inbox_by_recipient_and_status_soonest_first(store):
    late, soon, others = prompt(subject="late", due_at=T0 + HOUR), prompt(subject="soon"), prompt(recipient="k2")
    done = prompt(subject="done", due_at=T0 - HOUR)
    with store.transaction() as tx:
        for p in (late, soon, others, done):
            tx.insert_prompt(p)
        tx.acknowledge(done.id, T0)
    with store.transaction() as tx:
        assert [p.id for p in tx.inbox("k1", (PromptStatus.OPEN,), 10)] == [soon.id, late.id]
        assert [p.id for p in tx.inbox("k1", (PromptStatus.OPEN,), 1)] == [soon.id]
        assert [p.id for p in tx.inbox("k1", tuple(PromptStatus), 10)] == [done.id, soon.id, late.id]
        assert [p.id for p in tx.inbox("k1", (PromptStatus.ACKNOWLEDGED,), 10)] == [done.id]
        assert [p.id for p in tx.inbox("k2", (PromptStatus.OPEN,), 10)] == [others.id]


def test_the_inbox_breaks_ties_by_id(store):
    prompts = [prompt(subject=f"e{i}") for i in range(5)]
    with store.transaction() as tx:
        for p in prompts:
            tx.insert_prompt(p)
    with store.transaction() as tx:
        assert [p.id for p in tx.inbox("k1", (PromptStatus.OPEN,), 10)] == sorted(p.id for p in prompts)


def test_acknowledge_and_resolve_change_only_open_prompts(store):
    acked, resolved = prompt(subject="a"), prompt(subject="r")
    with store.transaction() as tx:
        tx.insert_prompt(acked)
        tx.insert_prompt(resolved)
        tx.acknowledge(acked.id, T0 + HOUR)
        tx.resolve_prompt(resolved.id, T0 + 2 * HOUR)
    with store.transaction() as tx:
        tx.resolve_prompt(acked.id, T0 + 3 * HOUR)  # acknowledged: the coordinator's, stays so
        tx.acknowledge(resolved.id, T0 + 3 * HOUR)  # resolved: stays resolved
        tx.acknowledge(acked.id, T0 + 4 * HOUR)  # again: keeps the first time
    with store.transaction() as tx:
        a, r = tx.prompt(acked.id), tx.prompt(resolved.id)
        assert (a.status, a.acknowledged_at, a.resolved_at) == (PromptStatus.ACKNOWLEDGED, T0 + HOUR, None)
        assert (r.status, r.resolved_at, r.acknowledged_at) == (PromptStatus.RESOLVED, T0 + 2 * HOUR, None)


def test_escalation_of_open_prompts_once_their_time_has_come(store):
    first = prompt(subject="first", escalate_at=T0 + HOUR)
    second = prompt(subject="second", escalate_at=T0 + 2 * HOUR)
    never = prompt(subject="never")
    acked = prompt(subject="acked", escalate_at=T0)
    later = prompt(subject="later", escalate_at=T0 + 9 * HOUR)
    with store.transaction() as tx:
        for p in (second, first, never, acked, later):
            tx.insert_prompt(p)
        tx.acknowledge(acked.id, T0)
    with store.transaction() as tx:
        assert [p.id for p in tx.to_escalate(T0 + 2 * HOUR, 10)] == [first.id, second.id]
        assert [p.id for p in tx.to_escalate(T0 + 2 * HOUR, 1)] == [first.id]
        tx.mark_escalated(first.id, T0 + 2 * HOUR)
    with store.transaction() as tx:
        assert [p.id for p in tx.to_escalate(T0 + 2 * HOUR, 10)] == [second.id]
        assert tx.prompt(first.id).escalated_at == T0 + 2 * HOUR


# -- dead letters ---------------------------------------------------------------------------

def test_dead_letters_open_listed_counted_and_retried_in_position_order(store):
    with store.transaction() as tx:
        tx.dead_letter("kafka", 1, 7, "ev-b", "unprocessable: " + "x" * 600, '{"b": 1}', T0)
        tx.dead_letter("kafka", 0, 9, None, "undecodable: not JSON", "\u00e6 not json", T0 + HOUR)
        tx.dead_letter("feed", 0, 3, "ev-c", "error: RuntimeError", "{}", T0 + 2 * HOUR)
    with store.transaction() as tx:
        assert tx.count_dead_letters() == 3 and tx.count_dead_letters(DeadLetterStatus.RESOLVED) == 0
        listed = tx.dead_letters()
        assert [(d["source"], d["part"], d["position"]) for d in listed] == [("kafka", 1, 7), ("kafka", 0, 9),
                                                                             ("feed", 0, 3)]
        assert len(listed[0]["reason"]) == 500 and listed[0]["event_id"] == "ev-b"
        assert listed[0]["status"] == "open" and listed[0]["resolved_at"] is None and "payload" not in listed[0]
        assert tx.dead_letters(limit=1) == listed[:1]
        open_ = tx.open_dead_letters(10)
        assert [(d["source"], d["part"], d["position"]) for d in open_] == [("feed", 0, 3), ("kafka", 0, 9),
                                                                            ("kafka", 1, 7)]
        assert [d["payload"] for d in open_] == ["{}", "\u00e6 not json", '{"b": 1}']
        assert len(tx.open_dead_letters(2)) == 2


def test_the_same_event_dead_lettered_again_updates_the_open_one(store):
    with store.transaction() as tx:
        tx.dead_letter("feed", 0, 3, "ev-1", "error: RuntimeError", "{}", T0)
        tx.dead_letter("kafka", 2, 40, "ev-1", "error: KeyError", "{}", T0 + HOUR)  # a re-sent copy
        tx.dead_letter("feed", 0, 5, None, "undecodable: a", "a", T0)  # no id: each one kept
        tx.dead_letter("feed", 0, 6, None, "undecodable: b", "b", T0)
    with store.transaction() as tx:
        assert tx.count_dead_letters() == 3
        [letter] = [d for d in tx.dead_letters() if d["event_id"] == "ev-1"]
        assert (letter["position"], letter["reason"]) == (3, "error: KeyError")


def test_dead_letters_resolved_one_by_one_or_by_event(store):
    with store.transaction() as tx:
        tx.dead_letter("feed", 0, 3, "ev-1", "error: RuntimeError", "{}", T0)
        tx.dead_letter("feed", 0, 4, "ev-2", "error: RuntimeError", "{}", T0)
        tx.dead_letter("feed", 0, 5, "ev-3", "error: RuntimeError", "{}", T0)
    with store.transaction() as tx:
        first = tx.open_dead_letters(10)[0]
        tx.resolve_dead_letter(first["id"], T0 + HOUR)
        tx.resolve_dead_letters_of_event("ev-2", T0 + 2 * HOUR)
        tx.dead_letter_failed(tx.open_dead_letters(10)[0]["id"], "unprocessable: still " + "y" * 600)
    with store.transaction() as tx:
        assert tx.count_dead_letters() == 1 and tx.count_dead_letters(DeadLetterStatus.RESOLVED) == 2
        [still] = tx.dead_letters()
        assert still["event_id"] == "ev-3" and still["reason"].startswith("unprocessable: still")
        assert len(still["reason"]) == 500
        resolved = tx.dead_letters(status=DeadLetterStatus.RESOLVED)
        assert [d["event_id"] for d in resolved] == ["ev-1", "ev-2"]
        assert all(d["status"] == "resolved" and d["resolved_at"] for d in resolved)
        assert len(tx.dead_letters(status=None)) == 3
        tx.dead_letter("feed", 0, 9, "ev-1", "error: again", "{}", T0 + 3 * HOUR)  # resolved: a new one
    with store.transaction() as tx:
        assert tx.count_dead_letters() == 2


# -- the delivery outbox --------------------------------------------------------------------

def test_deliveries_are_enqueued_once_and_come_due_in_order(store):
    with store.transaction() as tx:
        tx.enqueue_delivery("pr-2", "webhook", DeliveryKind.NEW, T0 + HOUR)
        tx.enqueue_delivery("pr-1", "webhook", DeliveryKind.NEW, T0)
        tx.enqueue_delivery("pr-1", "email", DeliveryKind.NEW, T0 + 2 * HOUR)
        tx.enqueue_delivery("pr-1", "webhook", DeliveryKind.NEW, T0 + 3 * HOUR)  # once per prompt, channel, kind
        tx.enqueue_delivery("pr-1", "webhook", DeliveryKind.ESCALATED, T0 + 3 * HOUR)
    with store.transaction() as tx:
        assert tx.deliveries_due(T0 - HOUR, 10) == []
        due = tx.deliveries_due(T0 + 3 * HOUR, 10)
        assert [(d["prompt_id"], d["channel"], d["kind"], d["attempts"]) for d in due] == [
            ("pr-1", "webhook", "new", 0), ("pr-2", "webhook", "new", 0), ("pr-1", "email", "new", 0),
            ("pr-1", "webhook", "escalated", 0)]
        assert due[3]["kind"] is DeliveryKind.ESCALATED
        assert len(tx.deliveries_due(T0 + 3 * HOUR, 2)) == 2
        assert [(d["channel"], d["kind"], d["status"]) for d in tx.deliveries_of("pr-2")] == [
            ("webhook", DeliveryKind.NEW, DeliveryStatus.PENDING)]


def test_a_delivery_done_or_retried_later(store):
    with store.transaction() as tx:
        tx.enqueue_delivery("pr-1", "webhook", DeliveryKind.NEW, T0)
        tx.enqueue_delivery("pr-2", "webhook", DeliveryKind.NEW, T0)
        tx.enqueue_delivery("pr-3", "webhook", DeliveryKind.NEW, T0)
    with store.transaction() as tx:
        one, two, three = sorted(tx.deliveries_due(T0, 10), key=lambda d: d["prompt_id"])
        tx.delivery_done(one["id"], DeliveryStatus.SENT, 1, None, None)
        tx.delivery_done(two["id"], DeliveryStatus.PENDING, 1, "webhook answered 503", T0 + HOUR)
        tx.delivery_done(three["id"], DeliveryStatus.PENDING, 1, "webhook answered 503", None)  # keeps its time
    with store.transaction() as tx:
        assert sorted(d["prompt_id"] for d in tx.deliveries_due(T0, 10)) == ["pr-3"]
        assert sorted(d["prompt_id"] for d in tx.deliveries_due(T0 + HOUR, 10)) == ["pr-2", "pr-3"]
        assert tx.deliveries_due(T0 + HOUR, 10)[0]["attempts"] == 1
        [sent] = tx.deliveries_of("pr-1")
        assert (sent["status"], sent["attempts"], sent["last_error"]) == (DeliveryStatus.SENT, 1, None)
        [retried] = tx.deliveries_of("pr-2")
        assert (retried["status"], retried["last_error"]) == ("pending", "webhook answered 503")
        tx.delivery_done(two["id"], DeliveryStatus.FAILED, 2, "webhook answered 400", None)
        tx.delivery_done(three["id"], DeliveryStatus.SKIPPED, 2, None, None)
    with store.transaction() as tx:
        assert tx.deliveries_due(T0 + 9 * HOUR, 10) == []
        assert [d["status"] for d in tx.deliveries_of("pr-2") + tx.deliveries_of("pr-3")] == ["failed", "skipped"]


def test_grouped_counts_for_the_metrics(store):
    with store.transaction() as tx:
        tx.insert_prompt(prompt(subject="e1"))
        tx.insert_prompt(prompt(subject="e2"))
        tx.insert_prompt(prompt(rule=Reason.CONSENT_EXPIRING, subject="r1"))
        tx.enqueue_delivery("pr-1", "webhook", DeliveryKind.NEW, T0)
        tx.enqueue_delivery("pr-2", "webhook", DeliveryKind.NEW, T0)
        tx.enqueue_delivery("pr-2", "email", DeliveryKind.NEW, T0)
    with store.transaction() as tx:
        [escalated] = [p for p in tx.prompts_of_plan("p1") if p.subject == "e2"]
        tx.mark_escalated(escalated.id, T0)
        [sent] = [d for d in tx.deliveries_due(T0, 10) if d["channel"] == "email"]
        tx.delivery_done(sent["id"], DeliveryStatus.SENT, 1, None, None)
    with store.transaction() as tx:
        assert sorted(tx.prompt_counts()) == [("consent_expiring", "open", False, 1),
                                              ("evaluation_due", "open", False, 1),
                                              ("evaluation_due", "open", True, 1)]
        assert sorted(tx.delivery_counts()) == [("email", "sent", 1), ("webhook", "pending", 2)]


def test_a_claimed_delivery_is_not_claimed_again_until_its_claim_lapses(store):
    """Two instances' dispatchers on one store never send the same delivery: a claim moves its
    due time; a claim nobody finished (the process died) lapses and the delivery is due again."""
    with store.transaction() as tx:
        for n in range(4):
            tx.enqueue_delivery(f"pr-{n}", "webhook", DeliveryKind.NEW, T0)
    with store.transaction() as tx:
        first = tx.claim_deliveries(T0, 3, T0 + HOUR)
    with store.transaction() as tx:
        second = tx.claim_deliveries(T0, 10, T0 + HOUR)
        assert tx.claim_deliveries(T0, 10, T0 + HOUR) == []
    assert len(first) == 3 and len(second) == 1
    assert not {d["id"] for d in first} & {d["id"] for d in second}
    with store.transaction() as tx:
        tx.delivery_done(first[0]["id"], DeliveryStatus.SENT, 1, None, None)
    with store.transaction() as tx:  # the claims lapse: the three never finished are due again
        lapsed = tx.claim_deliveries(T0 + HOUR, 10, T0 + 2 * HOUR)
    assert sorted(d["id"] for d in lapsed) == sorted(d["id"] for d in [*first[1:], *second])


def test_concurrent_claims_share_out_the_deliveries(store):
    """Dispatchers claiming at the same moment (threads standing in for instances) get disjoint
    sets, together all of them."""
    import threading

    with store.transaction() as tx:
        for n in range(40):
            tx.enqueue_delivery(f"pr-{n}", "webhook", DeliveryKind.NEW, T0)
    claimed: list[list[str]] = []
    barrier = threading.Barrier(4)

    def claim() -> None:
        barrier.wait()
        mine: list[str] = []
        for _ in range(10):
            with store.transaction() as tx:
                mine += [d["id"] for d in tx.claim_deliveries(T0, 3, T0 + HOUR)]
        claimed.append(mine)

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for mine in claimed for i in mine]
    assert len(every) == len(set(every)) == 40


# -- the bulk forms a batch of events uses ---------------------------------------------------

def test_views_and_prompts_of_many_plans_read_and_written_at_once(store):
    with store.transaction() as tx:
        tx.save_views([(f"p{i}", i, {"plan_id": f"p{i}", "n": i, "text": "Å ha noe å stå opp til 😀", "lone": "\ud800"},
                        T0 + i * HOUR) for i in range(1, 4)])
        tx.insert_prompts([prompt(plan_id=f"p{i}", subject=f"s{j}") for i in (1, 2) for j in range(3)])
    with store.transaction() as tx:
        views = tx.load_views(["p3", "p1", "nobody", "p2", "p1"])
        assert set(views) == {"p1", "p2", "p3"} and views["p2"] == {"plan_id": "p2", "n": 2,
                                                                   "text": "Å ha noe å stå opp til 😀", "lone": "\ud800"}
        prompts = tx.prompts_of_plans(["p1", "p2", "p3"])
        assert set(prompts) == {"p1", "p2"} and sorted(p.subject for p in prompts["p1"]) == ["s0", "s1", "s2"]
        assert tx.views_due(T0 + 10 * HOUR, 10) == ["p1", "p2", "p3"]
        tx.save_views([("p1", 9, {"plan_id": "p1", "closed": True}, None)])  # replaced whole
        assert tx.load_views([]) == {} and tx.prompts_of_plans([]) == {}
    with store.transaction() as tx:
        assert tx.load_views(["p1"]) == {"p1": {"plan_id": "p1", "closed": True}}
        assert tx.views_due(T0 + 10 * HOUR, 10) == ["p2", "p3"]


def test_more_plans_than_one_query_takes(store):
    ids = [f"plan-{i:04d}" for i in range(1234)]
    with store.transaction() as tx:
        tx.save_views([(plan_id, 1, {"plan_id": plan_id}, None) for plan_id in ids])
        tx.insert_prompts([prompt(plan_id=plan_id) for plan_id in ids])
    with store.transaction() as tx:
        assert len(tx.load_views(ids)) == 1234 and len(tx.prompts_of_plans(ids)) == 1234


def test_a_bulk_insert_with_a_taken_key_fails_whole(store):
    with store.transaction() as tx:
        tx.insert_prompt(prompt(subject="taken"))
    with pytest.raises((DuplicateKey, sqlite3.IntegrityError, psycopg.IntegrityError)), store.transaction() as tx:
        tx.insert_prompts([prompt(subject="new"), prompt(subject="taken")])
    with store.transaction() as tx:
        assert tx.count_prompts() == 1


def test_prompts_changed_in_bulk(store):
    a, b, acked = prompt(subject="a"), prompt(subject="b"), prompt(subject="acked")
    with store.transaction() as tx:
        tx.insert_prompts([a, b, acked])
        tx.acknowledge(acked.id, T0)
    with store.transaction() as tx:
        tx.resolve_prompts([a.id, acked.id], T0 + HOUR)  # the acknowledged one stays so
        tx.set_recipients([(a.id, "k2"), (b.id, None)])
        tx.set_details_of([(b.id, {"strategy": "Ring"}), (acked.id, {"x": 1})])
        tx.resolve_prompts([], T0)
        tx.set_recipients([])
        tx.set_details_of([])
    with store.transaction() as tx:
        ra, rb, rk = tx.prompt(a.id), tx.prompt(b.id), tx.prompt(acked.id)
        assert (ra.status, ra.resolved_at, ra.recipient) == (PromptStatus.RESOLVED, T0 + HOUR, "k2")
        assert (rb.status, rb.recipient, rb.details) == (PromptStatus.OPEN, None, {"strategy": "Ring"})
        assert (rk.status, rk.resolved_at, rk.details) == (PromptStatus.ACKNOWLEDGED, None, {"x": 1})


def test_deliveries_and_positions_in_bulk(store):
    p = prompt()
    with store.transaction() as tx:
        tx.insert_prompt(p)
        tx.enqueue_deliveries([(p.id, "webhook", DeliveryKind.NEW), (p.id, "email", DeliveryKind.NEW)], T0)
        tx.enqueue_deliveries([(p.id, "webhook", DeliveryKind.NEW)], T0 + HOUR)  # again: nothing new
        tx.set_positions("kafka", {0: 10, 3: 7})
        tx.set_positions("kafka", {3: 9})
        tx.set_positions("kafka", {})
    with store.transaction() as tx:
        assert sorted(d["channel"] for d in tx.deliveries_of(p.id)) == ["email", "webhook"]
        assert tx.positions("kafka") == {0: 10, 3: 9}
