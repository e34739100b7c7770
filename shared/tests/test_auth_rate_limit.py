"""Token failures are rate-limited per client address: past the limit, failing credentials get
429 with Retry-After (a repeated one without being verified again), while a valid token still
passes; other clients are not affected."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from flask import Flask, jsonify
from flask_smorest import Api, Blueprint

from careplan_shared import problem
from careplan_shared.auth import DevTokenVerifier, InvalidToken, mint_token
from careplan_shared.authentication import (
    LIMITER_EXTENSION,
    SHARED_VARIABLES,
    AuthFailureLimiter,
    authenticate,
    install_auth_failure_limit,
)
from careplan_shared.config import ConfigError

KEY = b"k" * 32
GOOD = {"Authorization": "Bearer " + mint_token(KEY, "k1", "coordinator")}
BAD = {"Authorization": "Bearer " + mint_token(b"x" * 32, "k1", "coordinator")}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingVerifier:
    """Counts verifications; ``fail_with``: fail every token with that reason."""

    def __init__(self, inner, fail_with: str | None = None):
        self.inner, self.fail_with, self.calls = inner, fail_with, 0

    def verify(self, token: str):
        self.calls += 1
        if self.fail_with:
            raise InvalidToken(self.fail_with)
        return self.inner.verify(token)


def make_app(limiter: AuthFailureLimiter | None = None, verifier=None) -> Flask:
    app = Flask("tiny")
    app.config.update(API_TITLE="tiny", API_VERSION="1", OPENAPI_VERSION="3.0.3")
    app.extensions["careplan"] = SimpleNamespace(verifier=verifier or DevTokenVerifier(KEY))
    api = Api(app)
    problem.install(app)
    blp = Blueprint("who", __name__)

    @blp.route("/who")
    def who():
        return jsonify(subject=authenticate().subject)

    api.register_blueprint(blp)
    if limiter is not None:
        install_auth_failure_limit(app, limiter)
    return app


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client_from(clock):
    app = make_app(AuthFailureLimiter(20, 60, clock=clock))
    client = app.test_client()

    def get(address: str, headers: dict[str, str]):
        return client.get("/who", headers=headers, environ_base={"REMOTE_ADDR": address})

    return get


def test_past_the_limit_a_repeated_bad_token_gets_429_with_retry_after(client_from, clock):
    for _ in range(20):
        r = client_from("10.0.0.1", BAD)
        assert r.status_code == 401 and r.mimetype == "application/problem+json"
        clock.now += 1  # 20 failures over 20 s
    r = client_from("10.0.0.1", BAD)
    assert r.status_code == 429 and r.mimetype == "application/problem+json"
    assert r.json["status"] == 429 and int(r.headers["Retry-After"]) == 40  # the first leaves at 1060
    assert client_from("10.0.0.2", GOOD).status_code == 200, "another client is not affected"
    assert client_from("10.0.0.2", BAD).status_code == 401

    clock.now = 1059.5
    assert client_from("10.0.0.1", BAD).headers["Retry-After"] == "1"
    clock.now = 1060.5  # the first failure has left the window: 19 < 20, verified again
    assert client_from("10.0.0.1", BAD).status_code == 401
    clock.now = 1200  # the window has passed
    for _ in range(20):
        assert client_from("10.0.0.1", BAD).status_code == 401
    assert client_from("10.0.0.1", BAD).status_code == 429


def test_a_valid_token_passes_from_a_client_over_the_limit(client_from, clock):
    """Many clients share an address (NAT, proxy, notification-service on 127.0.0.1): one
    client guessing must not lock the others out."""
    for _ in range(25):
        client_from("127.0.0.1", BAD)
    assert client_from("127.0.0.1", BAD).status_code == 429
    r = client_from("127.0.0.1", GOOD)
    assert r.status_code == 200 and r.json == {"subject": "k1"}
    other_good = {"Authorization": "Bearer " + mint_token(KEY, "k2", "clinician")}
    assert client_from("127.0.0.1", other_good).json == {"subject": "k2"}
    r = client_from("127.0.0.1", BAD)
    assert r.status_code == 429 and r.mimetype == "application/problem+json"
    assert int(r.headers["Retry-After"]) == 60 and "WWW-Authenticate" not in r.headers
    assert client_from("127.0.0.1", GOOD).status_code == 200  # still, after the 429


def test_over_the_limit_a_known_bad_token_is_not_verified_again(clock):
    verifier = CountingVerifier(DevTokenVerifier(KEY))
    app = make_app(AuthFailureLimiter(3, 60, clock=clock), verifier)
    client = app.test_client()
    assert [client.get("/who", headers=BAD).status_code for _ in range(5)] == [401, 401, 401, 429, 429]
    assert verifier.calls == 3, "past the limit a token that failed here is answered without verifying"
    other_bad = {"Authorization": "Bearer " + mint_token(b"y" * 32, "k1", "coordinator")}
    assert client.get("/who", headers=other_bad).status_code == 429  # verified, failed, counted
    assert verifier.calls == 4
    assert client.get("/who", headers=GOOD).status_code == 200 and verifier.calls == 5
    r = client.get("/who")  # no token at all: a failure like any other
    assert r.status_code == 429 and r.json["title"] == "Too Many Requests"


def test_a_token_that_may_pass_later_is_verified_again(clock):
    """The issuer's keys were unreachable: the failure counts, but the token is not remembered
    as bad, so it passes as soon as it verifies."""
    verifier = CountingVerifier(DevTokenVerifier(KEY), fail_with="signing keys unavailable")
    app = make_app(AuthFailureLimiter(3, 60, clock=clock), verifier)
    client = app.test_client()
    assert [client.get("/who", headers=GOOD).status_code for _ in range(5)] == [401, 401, 401, 429, 429]
    assert verifier.calls == 5
    verifier.fail_with = None
    assert client.get("/who", headers=GOOD).status_code == 200


def test_429s_do_not_extend_the_block(client_from, clock):
    for _ in range(20):
        client_from("10.0.0.1", BAD)
    for _ in range(50):
        clock.now += 1
        assert client_from("10.0.0.1", BAD).status_code == 429
    clock.now += 10.5
    assert client_from("10.0.0.1", BAD).status_code == 401


def test_successes_do_not_reset_counts(client_from, clock):
    for _ in range(19):
        client_from("10.0.0.1", BAD)
    assert client_from("10.0.0.2", GOOD).status_code == 200
    assert client_from("10.0.0.1", GOOD).status_code == 200
    assert client_from("10.0.0.1", BAD).status_code == 401  # the 20th failure
    assert client_from("10.0.0.1", GOOD).status_code == 200
    assert client_from("10.0.0.1", BAD).status_code == 429


def test_memory_is_bounded(clock):
    limiter = AuthFailureLimiter(3, 60, clock=clock, max_clients=100, credentials_per_client=4)
    for i in range(1000):
        limiter.failed(f"c{i}", limiter.fingerprint(f"t{i}"))
        limiter.failed(f"c{i}", limiter.fingerprint(f"t{i}"))
    assert len(limiter) == 100
    for i in range(50):
        limiter.failed("busy", limiter.fingerprint(f"guess{i}"))
    assert limiter.retry_after("busy") == 60
    assert len(limiter._clients["busy"].credentials) == 4 and len(limiter._clients["busy"].times) == 3
    assert limiter.refused("busy", limiter.fingerprint("guess49")) == 60
    assert limiter.refused("busy", limiter.fingerprint("guess0")) is None  # forgotten: verified again
    clock.now += 61
    limiter.failed("late")  # old clients leave once their failures are out of the window
    assert len(limiter) == 1 and limiter.retry_after("busy") is None


def test_credentials_are_remembered_by_a_keyed_hash():
    a, b = AuthFailureLimiter(), AuthFailureLimiter()
    token = "Bearer " + "x" * 40
    assert a.fingerprint(token) == a.fingerprint(token) != a.fingerprint(token + "y")
    assert a.fingerprint(token) != b.fingerprint(token), "keyed per process: not a plain hash"
    assert len(a.fingerprint("x" * 20_000)) == 16 and a.fingerprint(None) == a.fingerprint("")


def test_thread_safe(clock):
    limiter = AuthFailureLimiter(1000, 60, clock=clock)
    threads = [threading.Thread(target=lambda: [limiter.failed("c") for _ in range(100)]) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert limiter.retry_after("c") is None
    for _ in range(200):
        limiter.failed("c")
    assert limiter.retry_after("c") == 60


def test_settings_from_the_environment(monkeypatch):
    limiter = AuthFailureLimiter.from_env({"CAREPLAN_AUTH_FAILURE_LIMIT": "3",
                                           "CAREPLAN_AUTH_FAILURE_WINDOW_SECONDS": "5"})
    assert (limiter.limit, limiter.window) == (3, 5.0)
    assert (AuthFailureLimiter.from_env({}).limit, AuthFailureLimiter.from_env({}).window) == (20, 60.0)
    with pytest.raises(ConfigError, match="CAREPLAN_AUTH_FAILURE_WINDOW_SECONDS"):
        AuthFailureLimiter.from_env({"CAREPLAN_AUTH_FAILURE_WINDOW_SECONDS": "0"})
    assert set(SHARED_VARIABLES) == {"CAREPLAN_AUTH_FAILURE_LIMIT", "CAREPLAN_AUTH_FAILURE_WINDOW_SECONDS"}
    # an app without a limiter gets one from the environment at its first authentication
    monkeypatch.setenv("CAREPLAN_AUTH_FAILURE_LIMIT", "2")
    app = make_app()
    client = app.test_client()
    assert [client.get("/who", headers=BAD).status_code for _ in range(3)] == [401, 401, 429]
    assert app.extensions[LIMITER_EXTENSION].limit == 2


def test_limit_zero_turns_it_off(monkeypatch):
    monkeypatch.setenv("CAREPLAN_AUTH_FAILURE_LIMIT", "0")
    client = make_app().test_client()
    assert {client.get("/who", headers=BAD).status_code for _ in range(30)} == {401}


def test_library_loggers_stay_at_warning_even_at_debug():
    import logging

    from careplan_shared import logs

    logs.configure("test", "DEBUG")
    try:
        assert logging.getLogger().level == logging.DEBUG
        assert logging.getLogger("kafka.producer.kafka").getEffectiveLevel() == logging.WARNING
        assert logging.getLogger("psycopg").getEffectiveLevel() == logging.WARNING
    finally:
        logs.configure("test", "WARNING")
