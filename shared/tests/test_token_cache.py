"""A token's signature is verified once: its Principal is kept until the token's exp (never past
it), for the verifier and the signing keys that verified it; a failure is never kept; the cache
is bounded and thread-safe."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from flask import Flask, jsonify
from flask_smorest import Api, Blueprint

from careplan_shared import problem
from careplan_shared.auth import DEV_LEEWAY_SECONDS, DevTokenVerifier, InvalidToken, Principal, mint_token
from careplan_shared.authentication import (
    TOKENS_EXTENSION,
    VerifiedTokens,
    authenticate,
    install_verified_tokens,
    token_expiry,
)

KEY = b"k" * 32


class CountingVerifier:
    """Counts verifications; ``fail_with``: fail every token with that reason."""

    def __init__(self, inner, fail_with: str | None = None):
        self.inner, self.fail_with, self.calls = inner, fail_with, 0

    def verify(self, token: str) -> Principal:
        self.calls += 1
        if self.fail_with:
            raise InvalidToken(self.fail_with)
        return self.inner.verify(token)


def make_app(verifier) -> Flask:
    app = Flask("tiny")
    app.config.update(API_TITLE="tiny", API_VERSION="1", OPENAPI_VERSION="3.0.3")
    app.extensions["careplan"] = SimpleNamespace(verifier=verifier)
    api = Api(app)
    problem.install(app)
    blp = Blueprint("who", __name__)

    @blp.route("/who")
    def who():
        principal = authenticate()
        return jsonify(subject=principal.subject, role=principal.role, on_behalf_of=principal.on_behalf_of)

    api.register_blueprint(blp)
    return app


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def verifier() -> CountingVerifier:
    return CountingVerifier(DevTokenVerifier(KEY))


@pytest.fixture
def client(verifier):
    return make_app(verifier).test_client()


def test_a_cached_token_is_not_verified_again_before_it_expires(client, verifier):
    token = mint_token(KEY, "epr-1", "integration", on_behalf_of="clin-7")
    for _ in range(5):
        r = client.get("/who", headers=bearer(token))
        assert r.status_code == 200
        assert r.json == {"subject": "epr-1", "role": "integration", "on_behalf_of": "clin-7"}
    assert verifier.calls == 1
    # the same token with other spelling of the scheme or white space is the same token
    assert client.get("/who", headers={"Authorization": f"bearer  {token} "}).status_code == 200
    assert verifier.calls == 1


def test_an_expired_token_is_refused_even_if_cached(client, verifier, monkeypatch):
    token = mint_token(KEY, "k1", "coordinator", ttl_seconds=60)
    exp = token_expiry(token)
    assert exp is not None
    assert client.get("/who", headers=bearer(token)).status_code == 200
    assert client.get("/who", headers=bearer(token)).status_code == 200
    assert verifier.calls == 1

    # Past exp (inside the verifier's leeway): never from the cache, verified again.
    monkeypatch.setattr(time, "time", lambda: exp + 1)
    assert client.get("/who", headers=bearer(token)).status_code == 200
    assert verifier.calls == 2
    assert client.get("/who", headers=bearer(token)).status_code == 200
    assert verifier.calls == 3, "no entry is kept for a token past its exp"

    # Past the leeway too: refused, though it was cached a moment ago.
    monkeypatch.setattr(time, "time", lambda: exp + DEV_LEEWAY_SECONDS + 1)
    r = client.get("/who", headers=bearer(token))
    assert r.status_code == 401 and r.json["detail"] == "a valid bearer token is required (token expired)"
    assert verifier.calls == 4


def test_a_failing_token_is_never_cached(verifier):
    client = make_app(verifier).test_client()
    forged = mint_token(b"x" * 32, "k1", "coordinator")
    for calls in (1, 2, 3):
        assert client.get("/who", headers=bearer(forged)).status_code == 401
        assert verifier.calls == calls

    # The issuer's keys were unreachable: a token that may pass later is verified each time,
    # and kept only once it has passed.
    good = mint_token(KEY, "k1", "coordinator")
    verifier.fail_with = "signing keys unavailable"
    assert client.get("/who", headers=bearer(good)).status_code == 401
    assert verifier.calls == 4
    verifier.fail_with = None
    assert client.get("/who", headers=bearer(good)).status_code == 200
    assert client.get("/who", headers=bearer(good)).status_code == 200
    assert verifier.calls == 5


def test_a_different_token_with_the_same_subject_is_verified_on_its_own(client, verifier):
    first = mint_token(KEY, "k1", "coordinator", ttl_seconds=600)
    second = mint_token(KEY, "k1", "coordinator", ttl_seconds=700)
    assert first != second
    assert client.get("/who", headers=bearer(first)).status_code == 200
    assert client.get("/who", headers=bearer(second)).status_code == 200
    assert verifier.calls == 2
    # A token with the cached token's claims but someone else's signature, or with the claims
    # changed under the cached token's signature, is verified, and refused.
    forged = mint_token(b"x" * 32, "k1", "coordinator", ttl_seconds=600)
    header, payload, signature = first.split(".")
    other_claims = mint_token(KEY, "k1", "integration", ttl_seconds=600).split(".")[1]
    for bad in (forged, f"{header}.{other_claims}.{signature}", f"{header}.{payload}.{signature[:-2]}xx"):
        r = client.get("/who", headers=bearer(bad))
        assert r.status_code == 401, bad
    assert verifier.calls == 5
    assert client.get("/who", headers=bearer(first)).json["role"] == "coordinator"
    assert verifier.calls == 5


def test_the_cache_is_bounded_least_recently_used_first_out():
    verifier = CountingVerifier(DevTokenVerifier(KEY))
    tokens = VerifiedTokens(max_entries=3)
    minted = [mint_token(KEY, f"k{i}", "coordinator") for i in range(5)]
    for token in minted:
        tokens.verify(verifier, token)
    assert len(tokens) == 3 and verifier.calls == 5
    tokens.verify(verifier, minted[2])  # kept: now the most recently used
    assert verifier.calls == 5
    tokens.verify(verifier, minted[0])  # was pushed out: verified again, pushes out minted[3]
    assert verifier.calls == 6 and len(tokens) == 3
    tokens.verify(verifier, minted[3])
    assert verifier.calls == 7
    tokens.verify(verifier, minted[2])
    assert verifier.calls == 7
    assert VerifiedTokens().max_entries == 10_000


def test_entries_are_for_the_verifier_that_verified_them():
    tokens = VerifiedTokens()
    token = mint_token(KEY, "k1", "coordinator")
    a, b = CountingVerifier(DevTokenVerifier(KEY)), CountingVerifier(DevTokenVerifier(b"y" * 32))
    tokens.verify(a, token)
    tokens.verify(a, token)
    assert a.calls == 1
    with pytest.raises(InvalidToken):
        tokens.verify(b, token)  # another verifier (another key): its own answer
    assert b.calls == 1
    tokens.verify(a, token)
    assert a.calls == 2  # the entry was dropped when b was asked


class KeyedVerifier:
    """Like careplan_shared.oidc.JwksTokenVerifier: keys in ``_keyset``, replaced whole on a fetch."""

    def __init__(self):
        self._keyset = object()
        self.calls = 0
        self.inner = DevTokenVerifier(KEY)

    def verify(self, token: str) -> Principal:
        self.calls += 1
        return self.inner.verify(token)


def test_a_new_key_set_sends_every_token_through_the_verifier_again():
    tokens = VerifiedTokens()
    verifier = KeyedVerifier()
    multi = SimpleNamespace(_verifiers={"a": verifier, "dev": DevTokenVerifier(KEY)},
                            verify=verifier.verify)  # like oidc.MultiIssuerVerifier
    token = mint_token(KEY, "k1", "coordinator")
    for v in (verifier, multi):
        verifier.calls = 0
        tokens.verify(v, token)
        tokens.verify(v, token)
        assert verifier.calls == 1
        verifier._keyset = object()  # refetched (e.g. rotation: a key may have been retired)
        tokens.verify(v, token)
        tokens.verify(v, token)
        assert verifier.calls == 2


def test_an_entry_lasts_at_most_max_age_seconds():
    now = [1000.0]
    tokens = VerifiedTokens(max_age_seconds=300, clock=lambda: now[0])
    verifier = CountingVerifier(SimpleNamespace(verify=lambda token: Principal("k1", "coordinator")))
    token = "a.eyJleHAiOjEwMDAwMDAwMDAwfQ.c"  # exp far away; the fake verifier accepts anything
    assert token_expiry(token) == 10_000_000_000
    tokens.verify(verifier, token)
    now[0] += 299
    tokens.verify(verifier, token)
    assert verifier.calls == 1
    now[0] += 2
    tokens.verify(verifier, token)
    assert verifier.calls == 2


@pytest.mark.parametrize("token", [
    "opaque-token", "a.b.c", "a.eyJzdWIiOiJrMSJ9.c",  # no exp
    "a.eyJleHAiOiIxMjMifQ.c", "a.eyJleHAiOnRydWV9.c",  # exp not a number
    "a.W10.c", "a.eyJleHAiOjF9.c",  # not an object; long past
])
def test_a_token_without_a_usable_exp_is_not_kept(token):
    tokens = VerifiedTokens()
    verifier = CountingVerifier(SimpleNamespace(verify=lambda token: Principal("k1", "coordinator")))
    tokens.verify(verifier, token)
    tokens.verify(verifier, token)
    assert verifier.calls == 2 and len(tokens) == 0


def test_zero_entries_turns_the_cache_off():
    tokens = VerifiedTokens(max_entries=0)
    verifier = CountingVerifier(DevTokenVerifier(KEY))
    token = mint_token(KEY, "k1", "coordinator")
    tokens.verify(verifier, token)
    tokens.verify(verifier, token)
    assert verifier.calls == 2


def test_tokens_are_kept_by_a_keyed_hash_not_in_clear():
    tokens = VerifiedTokens()
    token = mint_token(KEY, "k1", "coordinator")
    tokens.verify(DevTokenVerifier(KEY), token)
    (digest,) = tokens._entries
    assert isinstance(digest, bytes) and len(digest) == 32 and token.encode() not in digest
    assert VerifiedTokens()._hash(token) != digest, "keyed per process: not a plain hash"


def test_an_app_gets_one_cache_and_can_be_given_its_own(verifier):
    app = make_app(verifier)
    token = mint_token(KEY, "k1", "coordinator")
    app.test_client().get("/who", headers=bearer(token))
    assert len(app.extensions[TOKENS_EXTENSION]) == 1
    small = install_verified_tokens(app, VerifiedTokens(max_entries=0))
    app.test_client().get("/who", headers=bearer(token))
    assert app.extensions[TOKENS_EXTENSION] is small and verifier.calls == 2


def test_thread_safe():
    tokens = VerifiedTokens(max_entries=50)
    verifier = DevTokenVerifier(KEY)
    minted = [mint_token(KEY, f"k{i}", "coordinator") for i in range(200)]
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for i in range(400):
                token = minted[(i * 7 + offset) % len(minted)]
                assert tokens.verify(verifier, token).subject == f"k{minted.index(token)}"
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(tokens) == 50
