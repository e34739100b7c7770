"""The access log's group writer on its own, with a write function the test controls: a poison
entry cannot hold up the log, and a read that gave up waiting is never logged behind its back."""

from __future__ import annotations

import threading
import time

import pytest

from plan_service.adapters.access_log import AccessEntry, AccessLogUnavailable, _GroupWriter, _wait


def entry(subject: str, result: str = "allowed", status: int = 200) -> AccessEntry:
    return AccessEntry("2026-11-30T10:00:00.000+00:00", "plan-1", subject, "clinician", None,
                       "read_plan", result, status)


class Store:
    """Refuses any batch holding a subject in ``poison``; refuses everything while ``down``."""

    def __init__(self, delay: float = 0.0):
        self.rows: list[AccessEntry] = []
        self.poison: set[str] = set()
        self.down = False
        self.delay = delay

    def write(self, batch: list[AccessEntry]) -> None:
        time.sleep(self.delay)
        if self.down or any(e.subject in self.poison for e in batch):
            raise OSError("refused")
        self.rows.extend(batch)


def until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_an_entry_the_store_refuses_cannot_hold_up_the_log():
    store = Store()
    writer = _GroupWriter(store.write, retry_seconds=0.01)
    store.poison.add("bad\ud800")
    writer.keep([entry("bad\ud800"), entry("kept-ok")])
    for i in range(5):  # fresh reads go on being logged, each durable
        _wait(writer, writer.submit(entry(f"reader-{i}")), 2.0)
    assert until(lambda: writer.status()["kept_for_retry"] == 0)
    subjects = [e.subject for e in store.rows]
    assert [s for s in subjects if s.startswith("reader-")] == [f"reader-{i}" for i in range(5)]
    assert "kept-ok" in subjects and "bad\ud800" not in subjects
    assert writer.status()["dropped"] == 1


def test_kept_entries_wait_while_the_store_is_down_and_are_written_once_it_is_back():
    store = Store()
    store.down = True
    writer = _GroupWriter(store.write, retry_seconds=0.01)
    with pytest.raises(AccessLogUnavailable):
        _wait(writer, writer.submit(entry("during-outage")), 2.0)
    writer.keep([entry("during-outage", "unavailable", 503)])
    time.sleep(0.1)
    assert writer.status()["kept_for_retry"] == 1 and writer.status()["dropped"] == 0
    store.down = False
    assert until(lambda: writer.status()["kept_for_retry"] == 0)
    assert [(e.subject, e.result) for e in store.rows] == [("during-outage", "unavailable")]


def test_a_read_that_gave_up_waiting_is_not_logged_as_read():
    store = Store(delay=0.3)
    writer = _GroupWriter(store.write)
    blocker = writer.submit(entry("first"))  # the writer is busy with this one for 0.3 s
    time.sleep(0.05)
    late = writer.submit(entry("gave-up"))
    with pytest.raises(AccessLogUnavailable):
        _wait(writer, late, 0.1)  # not taken yet: withdrawn
    _wait(writer, blocker, 2.0)
    time.sleep(0.5)
    assert [e.subject for e in store.rows] == ["first"]


def test_an_entry_being_written_is_waited_for_to_the_end():
    store = Store(delay=0.3)
    writer = _GroupWriter(store.write)
    waiting = writer.submit(entry("slow"))
    assert until(lambda: waiting.taken, 1.0)
    started = time.monotonic()
    _wait(writer, waiting, 0.05)  # past its timeout, but taken: the outcome decides
    assert time.monotonic() - started >= 0.1
    assert [e.subject for e in store.rows] == ["slow"]


def test_many_readers_share_commits():
    store = Store(delay=0.02)
    writer = _GroupWriter(store.write)
    threads = [threading.Thread(target=lambda i=i: _wait(writer, writer.submit(entry(f"r{i}")), 5.0))
               for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.rows) == 40 and writer.status()["written"] == 40
