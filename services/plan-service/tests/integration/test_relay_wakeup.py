"""The relay in one process, commits in another: the commit's NOTIFY wakes the leader (LISTEN)
long before its fallback poll, on the real PostgreSQL. The "other process" is a second
application with its own group committer and its own signal sender: everything between them
goes through the database, as it does between gunicorn workers."""

from __future__ import annotations

import time

import pytest

from careplan_testing import wait_for
from plan_service.adapters.positions import PostgresPositions, postgres_conninfo
from plan_service.application.relay import Relay
from plan_service.bootstrap import bootstrap
from plan_service.config import Config

pytestmark = pytest.mark.integration
ACTOR = {"role": "clinician", "id": "clin-1"}


class Broker:
    def __init__(self):
        self.messages: list = []

    def publish(self, events) -> None:
        self.messages += events

    def close(self) -> None:
        pass


def positions(postgres_env: dict) -> PostgresPositions:
    return PostgresPositions(postgres_conninfo(postgres_env), postgres_env["POSTGRES_SCHEMA"], "wakeup-test")


def test_a_commit_elsewhere_wakes_the_leading_relay(tmp_path, postgres_env):
    config = Config(data_dir=tmp_path, persistence="postgres", postgres=postgres_env)
    here = bootstrap(config).plans
    broker = Broker()
    relay = Relay(here, broker, positions(postgres_env), poll_interval=30)
    assert relay.signal is not None
    thread, stop = relay.start_thread()
    elsewhere = bootstrap(config, migrate=False).plans
    signal = positions(postgres_env).commit_signal()  # that process's own sender
    elsewhere.committer.on_saved.append(signal.send)
    try:
        assert wait_for(lambda: relay.is_leader, timeout=10)
        time.sleep(0.5)  # LISTEN is on
        for n in range(3):
            started = time.monotonic()
            plan_id = elsewhere.open_plan(patient_id=f"pat-synth-w{n}", service_level="municipal", age_band="18-25",
                                          actor=ACTOR).plan_id
            assert wait_for(lambda p=plan_id: any(e.plan_id == p for e in broker.messages), timeout=10)
            assert time.monotonic() - started < 5, "woken by the NOTIFY, not by the 30 s poll"
        assert signal.sent >= 1
    finally:
        stop.set()
        relay.wakeup.set_here()
        thread.join(10)
        here.close()
        elsewhere.close()


def test_without_a_signal_the_poll_still_finds_every_event(tmp_path, postgres_env):
    config = Config(data_dir=tmp_path, persistence="postgres", postgres=postgres_env)
    here = bootstrap(config).plans
    broker = Broker()
    relay = Relay(here, broker, positions(postgres_env), poll_interval=0.3)
    thread, stop = relay.start_thread()
    silent = bootstrap(config, migrate=False).plans  # commits, and tells nobody
    try:
        assert wait_for(lambda: relay.is_leader, timeout=10)
        ids = [silent.open_plan(patient_id=f"pat-synth-s{n}", service_level="municipal", age_band="18-25",
                                actor=ACTOR).plan_id for n in range(3)]
        assert wait_for(lambda: {e.plan_id for e in broker.messages} >= set(ids), timeout=10)
    finally:
        stop.set()
        relay.wakeup.set_here()
        thread.join(10)
        here.close()
        silent.close()
