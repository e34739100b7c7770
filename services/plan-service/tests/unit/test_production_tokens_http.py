"""plan-service configured for OIDC issuers (as in production): tokens verified through a real
local JWKS endpoint on 127.0.0.1. Good ones work; every bad one is a 401 problem."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwk, jwt

from careplan_shared.auth import load_or_create_dev_key, mint_token
from careplan_testing import JwksServer
from plan_service.config import Config
from plan_service.web.app import create_app

ISSUER, AUDIENCE = "https://helseid.test.example", "careplan-api"
OPEN = {"patient_id": "pat-synth-1", "service_level": "municipal", "age_band": "18-25"}


@pytest.fixture(scope="module")
def keys():
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)]


def public_jwk(key, kid):
    return {**jwk.RSAKey.import_key(key.public_key()).as_dict(), "kid": kid, "use": "sig", "alg": "RS256"}


def token(key, kid="k1", typ="at+jwt", **overrides):
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "epr-1", "role": "integration", "iat": now, "exp": now + 300}
    claims.update(overrides)
    header = {"alg": "RS256", "kid": kid, **({"typ": typ} if typ else {})}
    return jwt.encode(header, {k: v for k, v in claims.items() if v is not None}, jwk.RSAKey.import_key(key),
                      algorithms=["RS256"], default_type=None)


@pytest.fixture
def setup(tmp_path, keys):
    server = JwksServer()
    server.serve(public_jwk(keys[0], "k1"))
    config = Config(data_dir=tmp_path, persistence="memory", oidc={
        "OIDC_ISSUERS": "helseid", "OIDC_HELSEID_ISSUER": ISSUER, "OIDC_HELSEID_AUDIENCE": AUDIENCE,
        "OIDC_HELSEID_JWKS_URL": server.url})
    client = create_app(config).test_client()
    yield client, server, config
    server.stop()


def post(client, tok):
    # a new synthetic patient each time: one patient has one open plan
    body = {**OPEN, "patient_id": f"pat-synth-{uuid.uuid4().hex[:8]}"}
    return client.post("/v1/plans", json=body, headers={"Authorization": f"Bearer {tok}"})


def b64(value) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unverified_claims(tok):
    payload = tok.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def hs256_with_the_public_key(key, good):
    """Algorithm confusion: the issuer's public key (PEM) as an HMAC secret."""
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'at+jwt', 'kid': 'k1'})}.{good.split('.')[1]}"
    return f"{signing_input}.{b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())}"


def test_a_valid_issuer_token_is_accepted(setup, keys):
    client, _, _ = setup
    assert post(client, token(keys[0])).status_code == 201


def test_rotated_keys_are_fetched_and_retired_keys_refused(setup, keys):
    client, server, _ = setup
    # refetches are throttled (10 s by default); this test should not wait that long
    client.application.extensions["careplan"].verifier._verifiers[ISSUER].min_refresh_interval = 0
    assert post(client, token(keys[0])).status_code == 201
    server.serve(public_jwk(keys[1], "k2"))  # the issuer rotates: k1 retired, k2 new
    hits = server.hits
    assert post(client, token(keys[1], kid="k2")).status_code == 201
    assert server.hits == hits + 1  # one refetch for the new key
    assert post(client, token(keys[0])).status_code == 401  # the retired key's tokens are refused


@pytest.mark.parametrize("case, reason", [
    ("expired", "token expired"), ("wrong_audience", "wrong audience"), ("wrong_issuer", "unknown issuer"),
    ("alg_none", "algorithm not allowed"), ("tampered", "bad signature"), ("unknown_key", "unknown signing key"),
    ("dev_token", "unknown issuer"), ("id_token", "not an access token"), ("no_typ", "not an access token"),
    ("hs256_public_key", "algorithm not allowed"),
])
def test_bad_tokens_are_401(setup, keys, case, reason):
    client, _, config = setup
    good = token(keys[0])
    bad = {
        "expired": lambda: token(keys[0], exp=int(time.time()) - 600, iat=int(time.time()) - 900),
        "wrong_audience": lambda: token(keys[0], aud="another-api"),
        "wrong_issuer": lambda: token(keys[0], iss="https://evil.example"),
        "alg_none": lambda: f"{b64({'alg': 'none', 'kid': 'k1'})}.{good.split('.')[1]}.",
        "tampered": lambda: ".".join([good.split(".")[0], b64({**unverified_claims(good), "role": "coordinator"}),
                                      good.split(".")[2]]),
        "unknown_key": lambda: token(keys[1], kid="k9"),
        "dev_token": lambda: mint_token(load_or_create_dev_key(config.signing_key_file), "epr-1", "integration"),
        "id_token": lambda: token(keys[0], typ="JWT", nonce="n"),  # the same issuer and key, but an ID token
        "no_typ": lambda: token(keys[0], typ=None),
        "hs256_public_key": lambda: hs256_with_the_public_key(keys[0], good),
    }[case]()
    response = post(client, bad)
    assert response.status_code == 401 and response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.get_json()["detail"] == f"a valid bearer token is required ({reason})"
