"""OIDC/JWKS token verification against a real JWKS endpoint on 127.0.0.1.

Keys are generated with ``cryptography``, tokens signed with joserfc (or built by hand for the
attacks it refuses to produce). The endpoint counts its hits, so the tests can see when the
verifier fetched. Time for the key cache comes from a fake clock; claim times are real.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwk as joserfc_jwk
from joserfc import jws, jwt
from joserfc.registry import HeaderParameter

from careplan_shared.auth import DEV_AUDIENCE, DEV_ISSUER, DevTokenVerifier, InvalidToken, Principal, mint_token
from careplan_shared.config import ConfigError
from careplan_shared.oidc import (
    OIDC_VARIABLES,
    JwksTokenVerifier,
    MultiIssuerVerifier,
    is_oidc_variable,
    oidc_variables,
    verifier_from_env,
)
from careplan_testing import JwksServer

HELSEID = "https://helseid-sts.test.nhn.no"
IDPORTEN = "https://test.idporten.no"
AUDIENCE = "careplan-api"


# -- keys, tokens, the JWKS endpoint -------------------------------------------------------

@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "rsa2": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec": ec.generate_private_key(ec.SECP256R1()),
    }


def jose_key(private_key: Any) -> joserfc_jwk.Key:
    if isinstance(private_key, bytes):
        return joserfc_jwk.OctKey.import_key(private_key)
    codec = joserfc_jwk.RSAKey if isinstance(private_key, rsa.RSAPrivateKey) else joserfc_jwk.ECKey
    return codec.import_key(private_key)


def jwk(private_key: Any, kid: str, alg: str | None = None, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = dict(jose_key(private_key).as_dict(private=False))
    data.update({"kid": kid, "use": "sig", **({"alg": alg} if alg else {}), **extra})
    return data


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"iss": HELSEID, "aud": AUDIENCE, "sub": "clin-1", "role": "clinician",
                            "iat": now, "exp": now + 300}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def encode(payload: dict[str, Any], private_key: Any, alg: str = "RS256", **header: Any) -> str:
    """A JWS signed with ``private_key`` (an RSA or EC key of ``cryptography``, or an HMAC secret),
    with whatever ``header`` parameters (None: left out), known to joserfc or not."""
    header = {"alg": alg, **{k: v for k, v in header.items() if v is not None}}
    anything = HeaderParameter("anything, for a test", lambda value: None)
    registry = jws.JWSRegistry(header_registry={k: anything for k in header if k != "alg"}, algorithms=[alg])
    return jwt.encode(header, payload, jose_key(private_key), registry=registry, default_type=None)


def sign(private_key: Any, kid: str, alg: str = "RS256", *, typ: str | None = "at+jwt", **overrides: Any) -> str:
    """An access token (typ at+jwt, RFC 9068) of the issuer HELSEID, with ``claims(**overrides)``."""
    return encode(claims(**overrides), private_key, alg, kid=kid, typ=typ)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: dict[str, Any]) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def server() -> Iterator[JwksServer]:
    s = JwksServer()
    yield s
    s.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_verifier(server: JwksServer, clock: FakeClock) -> Iterator:
    made: list[JwksTokenVerifier] = []

    def make(**options: Any) -> JwksTokenVerifier:
        options = {"issuer": HELSEID, "audience": AUDIENCE, "jwks_url": server.url, "clock": clock,
                   "timeout": 2.0, **options}
        verifier = JwksTokenVerifier(**options)
        made.append(verifier)
        return verifier

    yield make
    for verifier in made:
        verifier.close()


@pytest.fixture
def verifier(make_verifier, server: JwksServer, keys) -> JwksTokenVerifier:
    server.serve(jwk(keys["rsa"], "rsa-1", "RS256"), jwk(keys["ec"], "ec-1", "ES256"))
    return make_verifier()


def rejects(verifier: Any, token: str, reason: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(token)
    message = str(caught.value)
    assert reason in message
    for part in token.split("."):  # the reason quotes nothing of the token
        assert len(part) < 8 or part not in message
    return caught.value


# -- valid tokens ----------------------------------------------------------------------------

def test_rs256_token_gives_its_principal(verifier, keys, server):
    assert verifier.verify(sign(keys["rsa"], "rsa-1")) == Principal("clin-1", "clinician")
    token = sign(keys["rsa"], "rsa-1", sub="epr-1", role="integration", on_behalf_of="clin-7")
    principal = verifier.verify(token)
    assert principal == Principal("epr-1", "integration", "clin-7")
    assert principal.actor == {"role": "clinician", "id": "clin-7", "via": "epr-1"}
    assert server.hits == 1  # keys fetched once, then cached


def test_es256_token_gives_its_principal(verifier, keys):
    token = sign(keys["ec"], "ec-1", "ES256", sub="coord-3", role="coordinator")
    assert verifier.verify(token) == Principal("coord-3", "coordinator")


def test_nbf_within_leeway_is_accepted(verifier, keys):
    assert verifier.verify(sign(keys["rsa"], "rsa-1", nbf=int(time.time()) + 10)).subject == "clin-1"


def test_keys_are_cached_for_cache_seconds(make_verifier, server, keys, clock):
    server.serve(jwk(keys["rsa"], "rsa-1", "RS256"))
    verifier = make_verifier(cache_seconds=300)
    token = sign(keys["rsa"], "rsa-1")
    for _ in range(5):
        verifier.verify(token)
    clock.advance(299)
    verifier.verify(token)
    assert server.hits == 1
    clock.advance(2)  # expired: fetched again
    verifier.verify(token)
    assert server.hits == 2


# -- rejected tokens ------------------------------------------------------------------------

def test_expired_token(verifier, keys):
    now = int(time.time())
    rejects(verifier, sign(keys["rsa"], "rsa-1", iat=now - 600, exp=now - 60), "token expired")


def test_expiry_within_leeway_still_accepted(verifier, keys):
    assert verifier.verify(sign(keys["rsa"], "rsa-1", exp=int(time.time()) - 5)).role == "clinician"


def test_token_without_exp(verifier, keys):
    rejects(verifier, sign(keys["rsa"], "rsa-1", exp=None), "exp")


def test_not_yet_valid_token(verifier, keys):
    rejects(verifier, sign(keys["rsa"], "rsa-1", nbf=int(time.time()) + 120), "not yet valid")


def test_wrong_audience(verifier, keys):
    rejects(verifier, sign(keys["rsa"], "rsa-1", aud="some-other-api"), "wrong audience")
    rejects(verifier, sign(keys["rsa"], "rsa-1", aud=None), "aud")


def test_wrong_issuer(verifier, keys, server):
    rejects(verifier, sign(keys["rsa"], "rsa-1", iss="https://evil.example"), "wrong issuer")
    rejects(verifier, sign(keys["rsa"], "rsa-1", iss=None), "wrong issuer")
    rejects(verifier, sign(keys["rsa"], "other-kid", iss="https://evil.example"), "wrong issuer")
    assert server.hits == 0  # decided before any key lookup


def test_alg_none_is_rejected_before_any_key_lookup(verifier, server):
    for alg in ("none", "None", "NONE"):
        for typ, signature in (("JWT", ""), ("at+jwt", ""), ("at+jwt", "c2lnbmF0dXJl")):
            token = f"{b64json({'alg': alg, 'typ': typ, 'kid': 'rsa-1'})}.{b64json(claims())}.{signature}"
            rejects(verifier, token, "algorithm not allowed")
    rejects(verifier, f"{b64json({'typ': 'at+jwt', 'kid': 'rsa-1'})}.{b64json(claims())}.", "malformed token")  # no alg
    assert server.hits == 0


def test_the_library_enforces_the_allow_list_too(verifier, server, keys):
    """Defence in depth: past the check that spares the key lookup, joserfc refuses "none" and
    HS256 itself (its registry holds this issuer's algorithms, fixed when it was made)."""
    verifier.algorithms = (*verifier.algorithms, "none", "HS256")
    none = f"{b64json({'alg': 'none', 'typ': 'at+jwt', 'kid': 'rsa-1'})}.{b64json(claims())}."
    rejects(verifier, none, "algorithm not allowed")
    pem = keys["rsa"].public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = f"{b64json({'alg': 'HS256', 'typ': 'at+jwt', 'kid': 'rsa-1'})}.{b64json(claims())}"
    forged = f"{signing_input}.{b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())}"
    rejects(verifier, forged, "algorithm not allowed")
    assert server.hits == 1  # these got as far as the key lookup


def test_hs256_signed_with_the_public_key_is_rejected(verifier, server, keys):
    """Algorithm confusion: the RSA public key (public, after all) used as an HMAC secret."""
    pem = keys["rsa"].public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    der = keys["rsa"].public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    as_jwk = json.dumps(jwk(keys["rsa"], "rsa-1", "RS256")).encode()
    for secret in (pem, pem.strip(), der, as_jwk):
        signing_input = f"{b64json({'alg': 'HS256', 'typ': 'at+jwt', 'kid': 'rsa-1'})}.{b64json(claims())}"
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        rejects(verifier, f"{signing_input}.{b64(signature)}", "algorithm not allowed")
    assert server.hits == 0


def test_symmetric_algorithms_cannot_be_configured(server):
    for algorithms in (["HS256"], ["RS256", "HS512"], ["none"], []):
        with pytest.raises(ValueError):
            JwksTokenVerifier(HELSEID, AUDIENCE, server.url, algorithms=algorithms)


def test_tampered_payload_fails_the_signature(verifier, keys):
    header, payload, signature = sign(keys["rsa"], "rsa-1", role="patient").split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged["role"] = "coordinator"
    rejects(verifier, f"{header}.{b64json(forged)}.{signature}", "bad signature")
    ec_header, _, ec_signature = sign(keys["ec"], "ec-1", "ES256", role="patient").split(".")
    rejects(verifier, f"{ec_header}.{b64json(forged)}.{ec_signature}", "bad signature")


def test_signature_by_a_key_not_in_the_jwks(verifier, keys):
    # right kid, wrong key (an attacker's own RSA key)
    rejects(verifier, sign(keys["rsa2"], "rsa-1"), "bad signature")


def test_token_alg_must_match_the_keys_alg(make_verifier, server, keys):
    server.serve(jwk(keys["rsa"], "rsa-1", "RS256"), jwk(keys["rsa2"], "rsa-plain"))
    verifier = make_verifier(algorithms=("RS256", "RS384", "ES256"))
    rejects(verifier, sign(keys["rsa"], "rsa-1", "RS384"), "does not match the signing key")
    assert verifier.verify(sign(keys["rsa2"], "rsa-plain", "RS384")).subject == "clin-1"  # JWK names no alg
    # an EC-signed token pointing at an RSA key
    rejects(verifier, sign(keys["ec"], "rsa-plain", "ES256"), "signing key does not fit")


def test_ec_token_must_use_the_keys_curve(make_verifier, server, keys):
    p384 = ec.generate_private_key(ec.SECP384R1())
    server.serve(jwk(p384, "ec-384"))
    verifier = make_verifier(algorithms=("ES256", "ES384"))
    assert verifier.verify(sign(p384, "ec-384", "ES384")).subject == "clin-1"
    rejects(verifier, sign(keys["ec"], "ec-384", "ES256"), "signing key does not fit")  # a P-256 signature


def test_missing_or_unknown_role(verifier, keys):
    rejects(verifier, sign(keys["rsa"], "rsa-1", role=None), "role claim missing or unknown")
    rejects(verifier, sign(keys["rsa"], "rsa-1", role="admin"), "role claim missing or unknown")
    rejects(verifier, sign(keys["rsa"], "rsa-1", role=["clinician"]), "role claim missing or unknown")
    rejects(verifier, sign(keys["rsa"], "rsa-1", sub=None), "subject claim missing")


def test_malformed_tokens_are_rejected_without_a_fetch(verifier, server, keys):
    good = sign(keys["rsa"], "rsa-1")
    for token in ("", "abc", "a.b.c", "...", good + "x" * 20_000, good.split(".", 1)[1]):
        rejects(verifier, token, "")
    rejects(verifier, encode(claims(), keys["rsa"], typ="at+jwt"), "no signing key")  # no kid
    rejects(verifier, encode(claims(), keys["rsa"], typ="at+jwt", kid=""), "no signing key")
    assert server.hits == 0


def test_payloads_that_are_no_json_object_are_malformed(verifier, server):
    header = b64json({"alg": "RS256", "typ": "at+jwt", "kid": "rsa-1"})
    for payload in (b"[1]", b'"text"', b"not json", b"[" * 10_000, b"\xff\xfe"):
        rejects(verifier, f"{header}.{b64(payload)}.c2ln", "malformed token")
    for bad_header in (b64(b'["alg"]'), b64(b'"alg"'), b64json({"alg": "RS256", "typ": "at+jwt", "kid": "rsa-1", "b64": False,
                                                                   "crit": ["b64"]})):
        rejects(verifier, f"{bad_header}.{b64json(claims())}.c2ln", "malformed token")
    rejects(verifier, f"{header}.{b64json(claims())}.c2ln\u00e9", "malformed token")
    assert server.hits == 0


def test_header_parameters(verifier, keys):
    # the issuer's own header parameters pass ...
    assert verifier.verify(encode(claims(), keys["rsa"], kid="rsa-1", typ="at+jwt", x5t="abc", nonce="n")).subject == "clin-1"
    # ... but not a critical one that nobody here understands
    rejects(verifier, encode(claims(), keys["rsa"], kid="rsa-1", typ="at+jwt", crit=["exp"], exp=1), "malformed token")


# -- access tokens, not ID tokens (RFC 9068) -----------------------------------------------

def test_an_id_token_is_not_an_access_token(verifier, keys, server):
    """An ID token is signed by the same issuer with the same keys, and often carries the
    same audience (the client id): only its typ tells it apart."""
    rejects(verifier, sign(keys["rsa"], "rsa-1", typ="JWT"), "not an access token")
    rejects(verifier, sign(keys["rsa"], "rsa-1", typ=None), "not an access token")
    rejects(verifier, sign(keys["rsa"], "rsa-1", typ="jwt", nonce="n", at_hash="x"), "not an access token")
    rejects(verifier, sign(keys["rsa"], "rsa-1", typ="application/jwt"), "not an access token")
    rejects(verifier, sign(keys["rsa"], "rsa-1", typ="at+jwt2"), "not an access token")
    assert server.hits == 0  # decided before any key lookup
    rejects(verifier, encode(claims(), keys["rsa"], kid="rsa-1", typ=["at+jwt"]), "not an access token")


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "At+Jwt", "application/at+jwt", "Application/AT+JWT"])
def test_an_access_token_typ_in_any_spelling_rfc_allows(verifier, keys, typ):
    assert verifier.verify(sign(keys["rsa"], "rsa-1", typ=typ)).subject == "clin-1"


def test_token_type_check_can_be_configured_or_switched_off(make_verifier, server, keys):
    server.serve(jwk(keys["rsa"], "rsa-1", "RS256"))
    anything = make_verifier(access_token_types=None)
    for typ in ("JWT", None, "at+jwt", "whatever"):
        assert anything.verify(sign(keys["rsa"], "rsa-1", typ=typ)).subject == "clin-1"
    custom = make_verifier(access_token_types=["application/at+jwt", "vnd.example.access+jwt"])
    assert custom.verify(sign(keys["rsa"], "rsa-1", typ="at+jwt")).subject == "clin-1"
    assert custom.verify(sign(keys["rsa"], "rsa-1", typ="application/VND.example.access+jwt")).subject == "clin-1"
    rejects(custom, sign(keys["rsa"], "rsa-1", typ="JWT"), "not an access token")
    for bad in ("at+jwt", [], [""], ["at jwt"], ["a/b/c"], [None]):
        with pytest.raises(ValueError):
            make_verifier(access_token_types=bad)


# -- claims ----------------------------------------------------------------------------------

def test_claims_checked_by_the_library(verifier, keys):
    now = int(time.time())
    assert verifier.verify(sign(keys["rsa"], "rsa-1", aud=["other-api", AUDIENCE])).subject == "clin-1"
    rejects(verifier, sign(keys["rsa"], "rsa-1", aud=["other-api", "third-api"]), "wrong audience")
    rejects(verifier, sign(keys["rsa"], "rsa-1", aud=""), "wrong audience")
    rejects(verifier, sign(keys["rsa"], "rsa-1", exp=now - 31), "token expired")  # just past the leeway
    rejects(verifier, sign(keys["rsa"], "rsa-1", exp=str(now + 300)), "invalid exp claim")
    rejects(verifier, sign(keys["rsa"], "rsa-1", exp=float("nan")), "invalid exp claim")  # would never expire
    rejects(verifier, sign(keys["rsa"], "rsa-1", iat=now + 120), "not yet valid")  # issued in the future
    rejects(verifier, sign(keys["rsa"], "rsa-1", nbf="soon"), "invalid nbf claim")
    rejects(verifier, sign(keys["rsa"], "rsa-1", exp=None, aud=None), "token lacks the aud, exp claim")
    rejects(verifier, sign(keys["rsa"], "rsa-1", sub=7), "invalid sub claim")


@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")  # "Key size should be >= 2048 bits"
def test_keys_shorter_than_2048_bits_are_refused(make_verifier, server):
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    server.serve(jwk(weak, "weak", "RS256"))
    rejects(make_verifier(), sign(weak, "weak"), "signing key does not fit")


def test_unusable_jwks_entries_are_skipped(make_verifier, server, keys):
    server.serve(
        {"kty": "oct", "kid": "hmac", "k": b64(b"s" * 32), "alg": "HS256"},
        jwk(keys["rsa2"], "enc-1", "RSA-OAEP", use="enc"),
        jwk(keys["rsa2"], "no-verify", "RS256", key_ops=["encrypt"]),
        "not a key",
        {**jwk(keys["rsa2"], "no-modulus", "RS256"), "n": None},
        {**jwk(keys["rsa2"], "bad-modulus", "RS256"), "n": "!!"},
        {**jwk(keys["ec"], "bad-curve", "ES256"), "crv": "P-999"},
        {**jwk(keys["ec"], "no-kid"), "kid": None},
        jwk(keys["rsa"], "rsa-1", "RS256"),
    )
    verifier = make_verifier()
    assert verifier.verify(sign(keys["rsa"], "rsa-1")).role == "clinician"
    for kid in ("enc-1", "no-verify", "no-modulus", "bad-modulus"):
        rejects(verifier, sign(keys["rsa2"], kid), "unknown signing key")
    rejects(verifier, sign(keys["ec"], "bad-curve", "ES256"), "unknown signing key")
    # an HS256 token naming the JWKS's symmetric key: refused by the allow-list already
    rejects(verifier, encode(claims(), b"s" * 32, "HS256", kid="hmac", typ="at+jwt"), "algorithm not allowed")


# -- key rotation and refetch throttling ---------------------------------------------------

def test_key_rotation(make_verifier, server, keys, clock):
    server.serve(jwk(keys["rsa"], "old", "RS256"))
    verifier = make_verifier(min_refresh_interval=10)
    assert verifier.verify(sign(keys["rsa"], "old")).subject == "clin-1"
    assert server.hits == 1

    server.serve(jwk(keys["rsa2"], "new", "RS256"))  # the issuer rotates: the old key is gone
    clock.advance(10)
    assert verifier.verify(sign(keys["rsa2"], "new", sub="clin-2")).subject == "clin-2"
    assert server.hits == 2  # one refetch for the unknown kid
    assert verifier.verify(sign(keys["rsa2"], "new", sub="clin-3")).subject == "clin-3"
    assert server.hits == 2  # the new kid is cached now

    # a token signed with the retired key: unknown kid; no refetch within the interval ...
    rejects(verifier, sign(keys["rsa"], "old"), "unknown signing key")
    assert server.hits == 2
    # ... and after it one refetch, and the JWKS still does not have it
    clock.advance(10)
    rejects(verifier, sign(keys["rsa"], "old"), "unknown signing key")
    assert server.hits == 3


def test_rotated_key_within_the_refresh_interval_waits_for_it(make_verifier, server, keys, clock):
    server.serve(jwk(keys["rsa"], "old", "RS256"))
    verifier = make_verifier(min_refresh_interval=10)
    verifier.verify(sign(keys["rsa"], "old"))
    server.serve(jwk(keys["rsa"], "old", "RS256"), jwk(keys["rsa2"], "new", "RS256"))
    clock.advance(3)
    rejects(verifier, sign(keys["rsa2"], "new"), "unknown signing key")
    assert server.hits == 1
    clock.advance(7)
    assert verifier.verify(sign(keys["rsa2"], "new")).role == "clinician"
    assert server.hits == 2


def test_a_flood_of_unknown_kids_refetches_at_most_once_per_interval(make_verifier, server, keys, clock):
    server.serve(jwk(keys["rsa"], "rsa-1", "RS256"))
    verifier = make_verifier(min_refresh_interval=10)
    verifier.verify(sign(keys["rsa"], "rsa-1"))
    clock.advance(10)
    tokens = [sign(keys["rsa2"], f"bogus-{uuid.uuid4().hex}") for _ in range(20)]
    start = threading.Barrier(len(tokens))
    outcomes: list[str] = []

    def attempt(token: str) -> None:
        start.wait()
        try:
            verifier.verify(token)
            outcomes.append("accepted")
        except InvalidToken as e:
            outcomes.append(str(e))

    threads = [threading.Thread(target=attempt, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert outcomes == ["unknown signing key"] * 20
    assert server.hits == 2  # the first fetch + at most one refetch for the whole flood
    for token in tokens:  # the same flood again, still within the interval
        rejects(verifier, token, "unknown signing key")
    assert server.hits == 2
    assert verifier.verify(sign(keys["rsa"], "rsa-1")).subject == "clin-1"  # known keys unaffected
    clock.advance(10)
    rejects(verifier, tokens[0], "unknown signing key")
    assert server.hits == 3


# -- the JWKS endpoint failing ---------------------------------------------------------------

def test_jwks_endpoint_down(make_verifier, server, keys, clock):
    server.stop()  # connection refused
    verifier = make_verifier(min_refresh_interval=10)
    rejects(verifier, sign(keys["rsa"], "rsa-1"), "signing keys unavailable")
    rejects(verifier, sign(keys["rsa"], "rsa-1"), "signing keys unavailable")


def test_jwks_endpoint_errors_are_retried_at_most_once_per_interval(make_verifier, server, keys, clock):
    server.serve(jwk(keys["rsa"], "rsa-1", "RS256"))
    server.status = 503
    verifier = make_verifier(min_refresh_interval=10)
    for _ in range(5):
        rejects(verifier, sign(keys["rsa"], "rsa-1"), "signing keys unavailable")
    assert server.hits == 1
    clock.advance(10)
    server.status = 200
    assert verifier.verify(sign(keys["rsa"], "rsa-1")).role == "clinician"
    assert server.hits == 2


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"keys": "x"}', b'{"keys": []}'])
def test_unusable_jwks_documents(make_verifier, keys, body):
    class Bad(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    bad = ThreadingHTTPServer(("127.0.0.1", 0), Bad)
    thread = threading.Thread(target=bad.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        verifier = make_verifier(jwks_url=f"http://127.0.0.1:{bad.server_address[1]}/jwks")
        rejects(verifier, sign(keys["rsa"], "rsa-1"), "signing keys unavailable")
    finally:
        bad.shutdown()
        bad.server_close()


def test_last_keys_stay_usable_while_the_endpoint_fails(make_verifier, server, keys, clock):
    server.serve(jwk(keys["rsa"], "rsa-1", "RS256"))
    verifier = make_verifier(cache_seconds=300, min_refresh_interval=10, max_stale_seconds=600)
    token = sign(keys["rsa"], "rsa-1")
    verifier.verify(token)
    server.status = 500
    clock.advance(301)  # cache expired; the refetch fails; the keys last fetched still verify
    assert verifier.verify(token).subject == "clin-1"
    assert server.hits == 2
    clock.advance(600)  # past cache_seconds + max_stale_seconds: no longer
    rejects(verifier, token, "signing keys unavailable")
    assert server.hits == 3


def test_plain_http_jwks_only_on_loopback():
    for url in ("http://idp.example/jwks", "ftp://127.0.0.1/jwks", "jwks"):
        with pytest.raises(ValueError):
            JwksTokenVerifier(HELSEID, AUDIENCE, url)
    JwksTokenVerifier(HELSEID, AUDIENCE, "https://idp.example/jwks").close()
    JwksTokenVerifier(HELSEID, AUDIENCE, "http://localhost:9/jwks").close()


# -- issuer profiles -------------------------------------------------------------------------

def test_static_role_for_an_id_porten_like_issuer(make_verifier, server, keys):
    server.serve(jwk(keys["ec"], "idp-ec", "ES256"))
    verifier = make_verifier(issuer=IDPORTEN, static_role="patient", subject_claim="pid")
    citizen = {"iss": IDPORTEN, "pid": "12345678901", "sub": "pairwise-xyz", "role": None, "acr": "idporten-loa-high"}
    assert verifier.verify(sign(keys["ec"], "idp-ec", "ES256", **citizen)) == Principal("12345678901", "patient")
    # a role claim in a citizen's token is ignored: no escalation by claim
    escalating = {**citizen, "role": "coordinator"}
    assert verifier.verify(sign(keys["ec"], "idp-ec", "ES256", **escalating)).role == "patient"
    rejects(verifier, sign(keys["ec"], "idp-ec", "ES256", **{**citizen, "pid": None}), "subject claim missing")
    with pytest.raises(ValueError):
        make_verifier(static_role="admin")


def test_custom_claim_names_helseid_style(make_verifier, server, keys):
    server.serve(jwk(keys["rsa"], "helseid-1", "RS256"))
    role_claim = "helseid://claims/client/claims/careplan_role"
    subject_claim = "helseid://claims/client/claims/orgnr_parent"
    obo_claim = "helseid://claims/hpr/hpr_number"
    verifier = make_verifier(role_claim=role_claim, subject_claim=subject_claim, on_behalf_of_claim=obo_claim)
    token = sign(keys["rsa"], "helseid-1", sub="client-id-abc", role=None,
                 **{role_claim: "integration", subject_claim: "987654321", obo_claim: "565501872"})
    assert verifier.verify(token) == Principal("987654321", "integration", "565501872")
    # the default claim names mean nothing to this verifier
    rejects(verifier, sign(keys["rsa"], "helseid-1", role="clinician"), "subject claim missing")


# -- several issuers -------------------------------------------------------------------------

@pytest.fixture
def dev() -> DevTokenVerifier:
    return DevTokenVerifier(b"k" * 32)


@pytest.fixture
def second_server() -> Iterator[JwksServer]:
    s = JwksServer()
    yield s
    s.stop()


def test_multi_issuer_dispatch(make_verifier, server, second_server, keys, dev):
    server.serve(jwk(keys["rsa"], "helseid-1", "RS256"))
    second_server.serve(jwk(keys["ec"], "idporten-1", "ES256"))
    multi = MultiIssuerVerifier({
        HELSEID: make_verifier(),
        IDPORTEN: make_verifier(issuer=IDPORTEN, static_role="patient", jwks_url=second_server.url),
        DEV_ISSUER: dev,
    })
    assert set(multi.issuers) == {HELSEID, IDPORTEN, DEV_ISSUER}
    assert multi.verify(sign(keys["rsa"], "helseid-1")) == Principal("clin-1", "clinician")
    citizen = sign(keys["ec"], "idporten-1", "ES256", iss=IDPORTEN, sub="citizen-1", role=None)
    assert multi.verify(citizen) == Principal("citizen-1", "patient")
    assert multi.verify(mint_token(b"k" * 32, "epr-1", "integration")) == Principal("epr-1", "integration")
    # an ID-porten key can't sign for HelseID: the dispatched verifier checks everything
    rejects(multi, sign(keys["ec"], "idporten-1", "ES256", iss=HELSEID, role="coordinator"), "unknown signing key")
    assert (server.hits, second_server.hits) == (1, 1)


def test_multi_issuer_unknown_issuer_and_malformed(make_verifier, server, keys):
    server.serve(jwk(keys["rsa"], "helseid-1", "RS256"))
    multi = MultiIssuerVerifier({HELSEID: make_verifier()})
    rejects(multi, sign(keys["rsa"], "helseid-1", iss="https://evil.example"), "unknown issuer")
    rejects(multi, sign(keys["rsa"], "helseid-1", iss=None), "no issuer")
    rejects(multi, f"{b64json({'alg': 'RS256', 'kid': 'helseid-1'})}.{b64json(claims(iss=['x']))}.c2ln", "no issuer")
    rejects(multi, "garbage", "malformed token")
    rejects(multi, mint_token(b"k" * 32, "epr-1", "integration"), "unknown issuer")
    assert server.hits == 0
    with pytest.raises(ValueError):
        MultiIssuerVerifier({})


# -- configuration ---------------------------------------------------------------------------

def oidc_env(server: JwksServer, **extra: str) -> dict[str, str]:
    return {
        "OIDC_ISSUERS": "helseid, idporten",
        "OIDC_HELSEID_ISSUER": HELSEID,
        "OIDC_HELSEID_AUDIENCE": AUDIENCE,
        "OIDC_HELSEID_JWKS_URL": server.url,
        "OIDC_HELSEID_ROLE_CLAIM": "helseid://claims/client/claims/careplan_role",
        "OIDC_IDPORTEN_ISSUER": IDPORTEN,
        "OIDC_IDPORTEN_AUDIENCE": "careplan-citizen",
        "OIDC_IDPORTEN_JWKS_URL": server.url,
        "OIDC_IDPORTEN_STATIC_ROLE": "patient",
        "OIDC_IDPORTEN_SUBJECT_CLAIM": "pid",
        "OIDC_IDPORTEN_ALGORITHMS": "RS256",
        **extra,
    }


def test_verifier_from_env(server, keys, dev):
    server.serve(jwk(keys["rsa"], "rsa-1", "RS256"), jwk(keys["ec"], "ec-1", "ES256"))
    verifier = verifier_from_env(oidc_env(server), dev)
    try:
        assert isinstance(verifier, MultiIssuerVerifier)
        assert set(verifier.issuers) == {HELSEID, IDPORTEN}
        clinician = sign(keys["ec"], "ec-1", "ES256", role=None,
                         **{"helseid://claims/client/claims/careplan_role": "clinician"})
        assert verifier.verify(clinician) == Principal("clin-1", "clinician")
        citizen = sign(keys["rsa"], "rsa-1", iss=IDPORTEN, aud="careplan-citizen", pid="12345678901", role=None)
        assert verifier.verify(citizen) == Principal("12345678901", "patient")
        # ID-porten is configured for RS256 only
        rejects(verifier, sign(keys["ec"], "ec-1", "ES256", iss=IDPORTEN, aud="careplan-citizen", pid="1"),
                "algorithm not allowed")
        rejects(verifier, mint_token(b"k" * 32, "epr-1", "integration"), "unknown issuer")
    finally:
        verifier.close()


def test_verifier_from_env_dev_passthrough_and_dev_alongside(server, keys, dev):
    assert verifier_from_env({}, dev) is dev
    assert verifier_from_env({"OIDC_ISSUERS": " ", "OIDC_ALLOW_DEV_TOKENS": "true"}, dev) is dev
    server.serve(jwk(keys["rsa"], "rsa-1", "RS256"))
    both = verifier_from_env(oidc_env(server, OIDC_ALLOW_DEV_TOKENS="true"), dev)
    try:
        assert DEV_ISSUER in both.issuers
        assert both.verify(mint_token(b"k" * 32, "epr-1", "integration", on_behalf_of="clin-7")) == \
            Principal("epr-1", "integration", "clin-7")
        forged_dev = mint_token(b"x" * 32, "epr-1", "coordinator")  # not the dev key
        rejects(both, forged_dev, "bad signature")
    finally:
        both.close()
    assert DEV_AUDIENCE  # the dev verifier keeps its own audience


def test_verifier_from_env_access_token_types(server, keys, dev):
    server.serve(jwk(keys["rsa"], "rsa-1", "RS256"))
    citizen = {"iss": IDPORTEN, "aud": "careplan-citizen", "pid": "12345678901", "role": None}
    clinician = {"role": None, "helseid://claims/client/claims/careplan_role": "clinician"}
    strict = verifier_from_env(oidc_env(server), dev)  # default: at+jwt
    relaxed = verifier_from_env(oidc_env(server, OIDC_IDPORTEN_ACCESS_TOKEN_TYPES="Any"), dev)
    custom = verifier_from_env(oidc_env(server, OIDC_HELSEID_ACCESS_TOKEN_TYPES="application/at+jwt, vnd.helseid+jwt"), dev)
    try:
        rejects(strict, sign(keys["rsa"], "rsa-1", typ="JWT", **clinician), "not an access token")
        rejects(strict, sign(keys["rsa"], "rsa-1", typ="JWT", **citizen), "not an access token")
        assert strict.verify(sign(keys["rsa"], "rsa-1", **citizen)).role == "patient"
        assert relaxed.verify(sign(keys["rsa"], "rsa-1", typ=None, **citizen)).role == "patient"
        rejects(relaxed, sign(keys["rsa"], "rsa-1", typ=None, **clinician), "not an access token")  # HelseID: still at+jwt
        assert custom.verify(sign(keys["rsa"], "rsa-1", typ="vnd.helseid+jwt", **clinician)).subject == "clin-1"
        assert custom.verify(sign(keys["rsa"], "rsa-1", typ="at+jwt", **clinician)).subject == "clin-1"
        rejects(custom, sign(keys["rsa"], "rsa-1", typ="JWT", **clinician), "not an access token")
    finally:
        for verifier in (strict, relaxed, custom):
            verifier.close()


@pytest.mark.parametrize("missing", ["OIDC_HELSEID_ISSUER", "OIDC_HELSEID_AUDIENCE", "OIDC_IDPORTEN_JWKS_URL"])
def test_verifier_from_env_names_a_missing_variable(server, dev, missing):
    env = oidc_env(server)
    del env[missing]
    with pytest.raises(ConfigError, match=missing):
        verifier_from_env(env, dev)


@pytest.mark.parametrize("variable, value", [
    ("OIDC_HELSEID_ALGORITHMS", "RS256,HS256"),
    ("OIDC_HELSEID_ALGORITHMS", "none"),
    ("OIDC_IDPORTEN_STATIC_ROLE", "admin"),
    ("OIDC_HELSEID_JWKS_URL", "http://helseid.example/jwks"),
    ("OIDC_IDPORTEN_ISSUER", HELSEID),
    ("OIDC_ALLOW_DEV_TOKENS", "maybe"),
    ("OIDC_ISSUERS", "helseid,helseid"),
    ("OIDC_ISSUERS", "helse-id"),
    ("OIDC_HELSEID_ACCESS_TOKEN_TYPES", "at+jwt,any"),
    ("OIDC_HELSEID_ACCESS_TOKEN_TYPES", "at jwt"),
    ("OIDC_IDPORTEN_ACCESS_TOKEN_TYPES", ","),
])
def test_verifier_from_env_rejects_bad_values_naming_the_variable(server, dev, variable, value):
    with pytest.raises(ConfigError, match=variable):
        verifier_from_env(oidc_env(server, **{variable: value}), dev)


def test_oidc_variables():
    assert "OIDC_ISSUERS" in OIDC_VARIABLES and "OIDC_NAME_JWKS_URL" in OIDC_VARIABLES
    expanded = oidc_variables(["helseid", "idporten"])
    assert "OIDC_HELSEID_ISSUER" in expanded and "OIDC_IDPORTEN_STATIC_ROLE" in expanded
    assert "OIDC_ALLOW_DEV_TOKENS" in expanded and not any("_NAME_" in v for v in expanded)
    assert all(is_oidc_variable(v) for v in expanded + OIDC_VARIABLES)
    assert not is_oidc_variable("OIDC_HELSEID_COLOUR") and not is_oidc_variable("OIDC__ISSUER")
    # every variable the factory reads is in the list
    read: set[str] = set()

    class Recording(dict):
        def get(self, key, default=None):
            read.add(key)
            return super().get(key, default)

    env = Recording({"OIDC_ISSUERS": "helseid", "OIDC_HELSEID_ISSUER": HELSEID, "OIDC_HELSEID_AUDIENCE": "a",
                     "OIDC_HELSEID_JWKS_URL": "https://idp.example/jwks"})
    verifier_from_env(env, DevTokenVerifier(b"k" * 32)).close()
    assert read <= set(oidc_variables(["helseid"]))
