"""The store down (issue 13): a request answers 503 problem+json with Retry-After at once, never a
500 after the outage; the pool fails fast once it failed, and recovers on the next success."""

from __future__ import annotations

import threading
import time

import pytest
from eventsourcing.persistence import OperationalError
from psycopg_pool import PoolTimeout

from plan_service.adapters.persistence import CONNECTION_KWARGS, FailFast, StoreUnavailable
from plan_service.config import postgres_env


def _unavailable(response) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"] == "2"
    assert response.json["type"].endswith("/store-unavailable")


@pytest.mark.parametrize("error", [StoreUnavailable("down"), OperationalError("connection lost")])
def test_a_write_while_the_store_is_down_is_a_503_problem(client, writer, open_plan, plans, monkeypatch, error):
    plan_id = open_plan()

    def down(*args, **kwargs):
        raise error

    monkeypatch.setattr(plans.recorder, "insert_events", down)
    _unavailable(client.post(f"/v1/plans/{plan_id}/events", headers=writer,
                             json={"type": "WhatMattersRecorded", "text": "x"}))


def test_a_read_while_the_store_is_down_is_a_503_that_shows_nothing(
        client, writer, open_plan, plans, app, monkeypatch):
    plan_id = open_plan()

    def down(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(plans, "_fetch", down)
    response = client.get(f"/v1/plans/{plan_id}", headers=writer)
    _unavailable(response)
    assert plan_id not in response.get_data(as_text=True)
    # nothing was shown, so no read is logged as allowed
    assert all(e.result != "allowed" or e.action != "read_plan"
               for _, e in app.extensions["careplan"].access_log.entries(plan_id))


class FakePool:
    def __init__(self) -> None:
        self.up = False
        self.calls = 0
        self.checked = threading.Event()

    def getconn(self, timeout=None):
        self.calls += 1
        if not self.up:
            time.sleep(0.05)  # the pool's wait
            raise PoolTimeout("couldn't get a connection")
        return "conn"

    def check(self) -> None:
        self.checked.set()


def test_once_the_pool_failed_calls_fail_at_once_until_the_hold_is_over_then_it_tries_again():
    pool = FakePool()
    guard = FailFast(pool, hold=0.3)
    with pytest.raises(PoolTimeout):
        guard()
    assert pool.checked.wait(2)  # the idle connections are checked (dropped ones replaced) at once
    started = time.monotonic()
    for _ in range(10):  # the library's retries, the committer's one-by-one: no wait each
        with pytest.raises(StoreUnavailable):
            guard()
    assert time.monotonic() - started < 0.05 and pool.calls == 1 and guard.failing
    pool.up = True
    time.sleep(0.35)
    assert guard() == "conn" and not guard.failing and pool.calls == 2
    assert guard() == "conn"


def test_postgres_defaults_wait_a_second_for_a_connection_and_check_it():
    settings = postgres_env({"PLAN_SERVICE_DATABASE_URL": "postgresql://u:p@db:5432/plans"})
    assert settings["POSTGRES_CONNECT_TIMEOUT"] == "1" and settings["POSTGRES_PRE_PING"] == "y"
    assert postgres_env({"POSTGRES_CONNECT_TIMEOUT": "3"})["POSTGRES_CONNECT_TIMEOUT"] == "3"
    assert CONNECTION_KWARGS["connect_timeout"] == 2 and CONNECTION_KWARGS["keepalives"] == 1


def test_the_library_pool_is_hardened(monkeypatch):
    from eventsourcing.postgres import PostgresDatastore

    from plan_service.adapters.persistence import harden_postgres_pool

    datastore = PostgresDatastore("db", "127.0.0.1", 1, "u", "p", connect_timeout=1)

    class App:
        class factory:  # noqa: N801 - shaped like the library's application
            pass

    App.factory.datastore = datastore  # type: ignore[attr-defined]
    guard = harden_postgres_pool(App)
    pool = datastore.pool
    assert isinstance(guard, FailFast) and pool.getconn is guard
    assert pool.reconnect_timeout == 2.0 and pool.timeout == 1
    assert pool.kwargs["connect_timeout"] == 2 and "statement_timeout=5000" in pool.kwargs["options"]
    assert harden_postgres_pool(type("A", (), {"factory": object()})) is None
