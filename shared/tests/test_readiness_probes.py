"""/readyz answers within a second whatever a dependency does (issue 13)."""

from __future__ import annotations

import threading
import time

from flask import Flask

from careplan_shared.health import PROBE_TIMEOUT, blueprint, probe, probe_all


def test_a_hanging_check_is_unreachable_after_the_timeout_and_is_not_started_twice():
    release, calls = threading.Event(), []

    def hangs():
        calls.append(1)
        release.wait(10)
        return 7

    owner = object()
    for _ in range(3):
        started = time.monotonic()
        answers = probe_all({"db": hangs, "broker": lambda: True}, owner=owner, timeout=0.2)
        assert time.monotonic() - started < 0.5
        assert answers == {"db": "unreachable", "broker": True}
    assert len(calls) == 1  # the one still under way is waited for again, not started again
    release.set()
    time.sleep(0.05)
    assert probe("db", hangs, owner=owner, timeout=0.2) == 7  # the finished one's answer


def test_a_failing_check_is_unreachable_and_checks_share_one_deadline():
    def fails():
        raise OSError("no route")

    assert probe("x", fails) == "unreachable"
    slow = lambda: time.sleep(2)  # noqa: E731
    started = time.monotonic()
    probe_all({"a": slow, "b": slow, "c": slow}, owner="deadline")
    assert time.monotonic() - started < PROBE_TIMEOUT + 0.3


def test_readyz_answers_503_with_retry_after_within_a_second():
    app = Flask(__name__)
    app.register_blueprint(blueprint(lambda: {"store": probe("store", lambda: time.sleep(3), owner=app)}))
    started = time.monotonic()
    response = app.test_client().get("/readyz")
    assert time.monotonic() - started < 1.0
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert response.json["checks"] == {"store": "unreachable"}
