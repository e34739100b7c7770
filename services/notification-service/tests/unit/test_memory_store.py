"""The in-memory store's own promises (its behaviour as a store is the contract suite's,
tests/integration/test_store_contract.py): snapshots, rollback, one transaction at a time."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest

from notification_service.adapters.memory_store import MemoryStore

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def test_a_transaction_sees_a_snapshot_and_nothing_of_it_is_kept_on_error():
    store = MemoryStore()
    with store.transaction() as tx:
        tx.save_view("p1", 1, {"version": 1}, None)
    with pytest.raises(KeyError), store.transaction() as tx:
        tx.save_view("p1", 2, {"version": 2}, T0)
        tx.set_position("feed", 0, 5)
        raise KeyError("the use case failed")
    with store.transaction() as tx:
        assert tx.load_view("p1") == {"version": 1} and tx.views_due(T0, 10) == [] and tx.positions("feed") == {}


def test_state_json_cannot_hold_fails_as_it_would_in_a_real_store():
    with pytest.raises(TypeError), MemoryStore().transaction() as tx:
        tx.save_view("p1", 1, {"when": T0}, None)


def test_a_transaction_inside_another_of_the_same_thread_is_refused():
    store = MemoryStore()
    with store.transaction():
        with pytest.raises(RuntimeError, match="inside a transaction"):
            with store.transaction():
                pass
    with store.transaction() as tx:  # and the store is usable afterwards
        tx.set_position("feed", 0, 1)


def test_transactions_of_many_threads_run_one_at_a_time():
    store = MemoryStore()

    def bump() -> None:
        for _ in range(200):
            with store.transaction() as tx:  # read, then write: no other transaction in between
                tx.set_position("feed", 0, (tx.position("feed", 0) or 0) + 1)

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with store.transaction() as tx:
        assert tx.position("feed", 0) == 800
