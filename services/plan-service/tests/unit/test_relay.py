"""The relay loop with an in-memory store and publisher: order, position after ack, recovery."""

from __future__ import annotations

import threading

from careplan_testing import wait_for
from plan_service.adapters.positions import MemoryPositions
from plan_service.application.plans import PlanApplication
from plan_service.application.relay import Relay

ACTOR = {"role": "clinician", "id": "c1"}


class Broker:
    def __init__(self, fail_times: int = 0):
        self.fail_times = fail_times
        self.messages: list = []

    def publish(self, events) -> None:
        if self.fail_times:
            self.fail_times -= 1
            raise ConnectionError("broker down")
        self.messages += events

    def close(self) -> None:
        pass


class FlakyPositions(MemoryPositions):
    def __init__(self, fail_loads: int):
        super().__init__()
        self.fail_loads = fail_loads

    def load(self) -> int:
        if self.fail_loads:
            self.fail_loads -= 1
            raise OSError("database restarting")
        return super().load()


def app_with_events(n: int) -> PlanApplication:
    app = PlanApplication({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    plan_id = app.open_plan(patient_id="pat-synth-1", service_level="municipal", age_band="18-25",
                            actor=ACTOR).plan_id
    for i in range(n - 1):
        app.record(plan_id, [("WhatMattersRecorded", {"text": f"{i}", "language": "nb"})], actor=ACTOR)
    return app


def test_position_is_recorded_only_after_the_broker_acknowledged():
    app, broker, positions = app_with_events(5), Broker(fail_times=1), MemoryPositions()
    relay = Relay(app, broker, positions, batch_size=3)
    try:
        relay.step()
    except ConnectionError:
        pass
    assert positions.load() == 0 and broker.messages == []
    # positions are notification-log ids: the plan's events and its patient index's share the log
    assert relay.step() == 3 and positions.load() == broker.messages[-1].position
    assert relay.step() == 2 and relay.step() == 0
    assert [e.plan_version for e in broker.messages] == [1, 2, 3, 4, 5]


def test_the_loop_survives_store_and_broker_trouble_and_resumes():
    app, broker = app_with_events(20), Broker(fail_times=3)
    relay = Relay(app, broker, FlakyPositions(fail_loads=2), batch_size=7, max_backoff=0.05)
    thread, stop = relay.start_thread()
    try:
        assert wait_for(lambda: len(broker.messages) == 20, timeout=10)
    finally:
        stop.set()
        thread.join(5)
    assert [e.plan_version for e in broker.messages] == list(range(1, 21))
    assert relay.status()["last_error"] is None


def test_only_one_relay_leads():
    positions = MemoryPositions()
    assert positions.acquire_leadership(0.01)
    second = threading.Thread(target=lambda: results.append(positions.acquire_leadership(0.05)))
    results: list[bool] = []
    second.start()
    second.join()
    assert results == [False]


class Signal:
    """A commit signal that only counts (PostgresCommitSignal carries it across processes)."""

    def __init__(self):
        self.sent = 0
        self.listeners: list = []

    def send(self) -> None:
        self.sent += 1

    def start_listening(self, on_signal) -> threading.Event:
        self.listeners.append(on_signal)
        return threading.Event()


def test_a_commit_wakes_the_relay_here_and_signals_the_leader_elsewhere():
    signal = Signal()
    relay = Relay(app_with_events(1), Broker(), MemoryPositions(), signal=signal)
    relay.wakeup.set()  # this process does not lead: the leader is elsewhere, signal it
    assert relay.wakeup.is_set() and signal.sent == 1
    relay.is_leader = True
    relay.wakeup.set()  # this process leads: nobody else relays, nothing to send
    assert signal.sent == 1
    assert Relay(app_with_events(1), Broker(), MemoryPositions()).signal is None  # in-process only: no signal


def test_the_leader_listens_for_signals_while_it_leads():
    signal = Signal()
    app, broker = app_with_events(3), Broker()
    relay = Relay(app, broker, MemoryPositions(), signal=signal, poll_interval=30)
    thread, stop = relay.start_thread()
    try:
        assert wait_for(lambda: len(broker.messages) == 3 and signal.listeners, timeout=10)
        plan_id = broker.messages[0].plan_id
        app.record(plan_id, [("WhatMattersRecorded", {"text": "more", "language": "nb"})], actor=ACTOR)
        signal.listeners[0]()  # a notification from another process's commit
        assert wait_for(lambda: len(broker.messages) == 4, timeout=5)  # long before the 30 s poll
    finally:
        stop.set()
        relay.wakeup.set_here()
        thread.join(5)
