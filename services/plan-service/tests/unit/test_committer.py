"""Group commit: batching, per-aggregate order, failure isolation."""

from __future__ import annotations

import threading
import uuid

import pytest

from careplan_testing import wait_for
from plan_service.application.committer import GroupCommitter


class Agg:
    def __init__(self, id_: uuid.UUID, events: list[str]):
        self.id = id_
        self._pending = list(events)

    @property
    def pending_events(self) -> list[str]:
        return self._pending


class FakeStore:
    """Saves atomically; refuses any batch containing an aggregate marked as conflicting."""

    def __init__(self, conflicting: set[uuid.UUID] = frozenset()):
        self.conflicting = conflicting
        self.saved: list[str] = []
        self.calls: list[int] = []
        self.gate = threading.Event()
        self.gate.set()

    def save(self, *aggs: Agg) -> str:
        self.gate.wait(5)
        self.calls.append(len(aggs))
        events = [e for a in aggs for e in a.pending_events]
        for a in aggs:
            a.pending_events.clear()  # as the library does: saving pops pending events
        if any(a.id in self.conflicting for a in aggs):
            raise RuntimeError("conflict")
        self.saved += events
        return "ok"


def run_concurrently(committer: GroupCommitter, items: list[Agg]) -> dict[int, object]:
    results: dict[int, object] = {}

    def one(n: int, agg: Agg) -> None:
        try:
            results[n] = committer.save(agg)
        except Exception as e:  # noqa: BLE001
            results[n] = e

    threads = [threading.Thread(target=one, args=(n, a)) for n, a in enumerate(items)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_saves_are_grouped_into_batches():
    store = FakeStore()
    committer = GroupCommitter(store.save, max_batch=64)
    store.gate.clear()  # hold the first batch so the others queue up behind it
    first = threading.Thread(target=committer.save, args=(Agg(uuid.uuid4(), ["e0"]),))
    first.start()
    aggs = [Agg(uuid.uuid4(), [f"e{n}"]) for n in range(1, 21)]
    releaser = threading.Timer(0.2, store.gate.set)
    releaser.start()
    results = run_concurrently(committer, aggs)
    first.join()
    assert all(r == "ok" for r in results.values())
    assert sorted(store.saved) == sorted(["e0"] + [f"e{n}" for n in range(1, 21)])
    assert max(store.calls) > 1 and committer.batches < committer.items


def test_a_conflict_fails_only_its_own_request():
    bad = uuid.uuid4()
    store = FakeStore(conflicting={bad})
    committer = GroupCommitter(store.save)
    store.gate.clear()
    aggs = [Agg(uuid.uuid4(), [f"good{n}"]) for n in range(6)] + [Agg(bad, ["bad"])]
    threading.Timer(0.2, store.gate.set).start()
    results = run_concurrently(committer, aggs)
    assert isinstance(results[6], RuntimeError)
    assert all(results[n] == "ok" for n in range(6))
    assert sorted(store.saved) == sorted(f"good{n}" for n in range(6))


def test_same_aggregate_never_shares_a_batch_and_keeps_order():
    plan = uuid.uuid4()
    seen: list[list[str]] = []

    def save(*aggs):
        ids = [a.id for a in aggs]
        assert len(ids) == len(set(ids)), "one aggregate twice in a batch"
        seen.append([e for a in aggs for e in a.pending_events])
        return "ok"

    committer = GroupCommitter(save)
    for n in range(5):
        committer.save(Agg(plan, [f"e{n}"]))
    assert [e for batch in seen for e in batch] == [f"e{n}" for n in range(5)]


def test_max_batch_is_respected():
    store = FakeStore()
    committer = GroupCommitter(store.save, max_batch=3)
    store.gate.clear()
    threading.Timer(0.2, store.gate.set).start()
    run_concurrently(committer, [Agg(uuid.uuid4(), [f"e{n}"]) for n in range(10)])
    assert max(store.calls) <= 3 and len(store.saved) == 10


def test_errors_reach_the_caller():
    def save(*aggs):
        raise ValueError("boom")

    with pytest.raises(ValueError):
        GroupCommitter(save).save(Agg(uuid.uuid4(), ["x"]))


def test_a_failing_commit_callback_costs_only_that_wake_up():
    store = FakeStore()
    committer = GroupCommitter(store.save)
    woken: list[int] = []

    def broken() -> None:
        raise RuntimeError("the relay's wake-up could not be sent")

    committer.on_saved += [broken, lambda: woken.append(1)]
    committer.save(Agg(uuid.uuid4(), ["a"]))
    committer.save(Agg(uuid.uuid4(), ["b"]))  # the committing thread is still there
    assert store.saved == ["a", "b"]
    assert wait_for(lambda: len(woken) == 2, timeout=5)  # (callbacks run after the answers)
