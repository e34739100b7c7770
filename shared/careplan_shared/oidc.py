"""Production bearer tokens: JWTs from OIDC issuers, verified against the issuer's JWKS.

HelseID issues the clinicians' (and the EPR integrations') tokens, ID-porten the citizens'.
Each issuer gets one :class:`JwksTokenVerifier`; :class:`MultiIssuerVerifier` picks one by
the token's ``iss``, so a service accepts both at once (and, if asked, the embedded dev
tokens too). :func:`verifier_from_env` builds that from environment variables and falls back
to the dev verifier when no issuer is configured. Every verifier has the same
``verify(token) -> Principal`` call as :class:`careplan_shared.auth.DevTokenVerifier`, and
every failure - a bad token or an unreachable JWKS endpoint alike - is ``InvalidToken``
(-> 401, never 500), with a short reason that never quotes the token.

Signing keys: fetched with ``requests`` (timeout, no redirects, size cap), cached by ``kid``
for ``cache_seconds``. A token whose ``kid`` is not in the cache (key rotation) triggers a
refetch, but at most one fetch attempt - successful or not, for whatever reason - happens
per ``min_refresh_interval`` seconds, so a flood of tokens with made-up key ids, or a dead
endpoint, costs the issuer one request per interval. While the endpoint fails, the keys
last fetched stay usable for ``max_stale_seconds`` past their expiry.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from careplan_shared.auth import DEV_ISSUER, ROLES, InvalidToken, Principal, principal_from_claims
from careplan_shared.config import ConfigError

log = logging.getLogger(__name__)

# Only asymmetric signatures: a JWKS publishes public keys. HS* (shared secrets) and "none"
# can never be allowed, whatever the configuration says.
ASYMMETRIC_ALGORITHMS = frozenset({
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
})
DEFAULT_ALGORITHMS = ("RS256", "ES256")
MAX_TOKEN_CHARS = 16_384
MAX_JWKS_BYTES = 512 * 1024
_SIGNING_KEY_TYPES = ("RSA", "EC", "OKP")
_PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
_KEY_CLASSES: dict[str, tuple[type[_PublicKey], ...]] = {  # algorithm family -> public key classes it verifies with
    "RS": (rsa.RSAPublicKey,), "PS": (rsa.RSAPublicKey,), "ES": (ec.EllipticCurvePublicKey,),
    "Ed": (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey),
}


class TokenVerifier(Protocol):
    def verify(self, token: str) -> Principal: ...


@dataclass(frozen=True)
class _Key:
    kid: str
    algorithm: str | None  # the JWK's "alg", if it names one: then only that algorithm
    key: Any  # a cryptography public key


@dataclass(frozen=True)
class _KeySet:
    keys: Mapping[str, _Key]
    fetched_at: float | None  # clock() of the fetch; None: never fetched


class _FetchFailed(Exception):
    pass


def _reason(error: jwt.PyJWTError) -> str:
    """A short reason for a 401, naming no part of the token."""
    for kind, text in (
        (jwt.ExpiredSignatureError, "token expired"),
        (jwt.ImmatureSignatureError, "token not yet valid"),
        (jwt.InvalidAudienceError, "wrong audience"),
        (jwt.InvalidIssuerError, "wrong issuer"),
        (jwt.InvalidSignatureError, "bad signature"),
        (jwt.InvalidAlgorithmError, "algorithm not allowed"),
        (jwt.InvalidKeyError, "signing key does not fit the algorithm"),
        (jwt.DecodeError, "malformed token"),
    ):
        if isinstance(error, kind):
            return text
    if isinstance(error, jwt.MissingRequiredClaimError):
        return f"token lacks the {error.claim} claim"
    return type(error).__name__


def _check_jwks_url(url: str) -> None:
    """https, or plain http only to this machine (tests, a local mock issuer)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname:
        if parts.hostname == "localhost":
            return
        try:
            if ipaddress.ip_address(parts.hostname).is_loopback:
                return
        except ValueError:
            pass
    raise ValueError(f"JWKS URL must be https:// (http:// only on loopback), got {url!r}")


def _check_algorithms(algorithms: Sequence[str]) -> tuple[str, ...]:
    algorithms = tuple(algorithms)
    bad = [a for a in algorithms if a not in ASYMMETRIC_ALGORITHMS]
    if bad or not algorithms:
        raise ValueError(f"algorithms must be some of {', '.join(sorted(ASYMMETRIC_ALGORITHMS))}; got {bad or 'none'}")
    return algorithms


def _unverified_claims(token: Any) -> dict[str, Any]:
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise InvalidToken("malformed token")
    try:
        return jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise InvalidToken("malformed token") from None


class JwksTokenVerifier:
    """Verifies one OIDC issuer's JWTs against that issuer's JWKS.

    ``static_role`` (e.g. ``"patient"`` for ID-porten, whose tokens say nothing about a role)
    is every token's role, and any role claim in the token is ignored. Otherwise the role is
    read from ``role_claim`` and must be one of ``auth.ROLES``. Claim names are looked up as
    flat keys, so long HelseID-style names (``"helseid://claims/identity/pid"``) work as they
    are.

    ``clock`` drives the key cache and the refetch throttle only; ``exp``, ``nbf`` and ``iat``
    are checked by PyJWT against the wall clock (PyJWT 2.15 has no clock hook).
    """

    def __init__(
        self,
        issuer: str,
        audience: str,
        jwks_url: str,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        role_claim: str = "role",
        subject_claim: str = "sub",
        on_behalf_of_claim: str = "on_behalf_of",
        leeway: float = 30,
        cache_seconds: float = 300,
        min_refresh_interval: float = 10,
        timeout: float = 3.0,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        static_role: str | None = None,
        max_stale_seconds: float = 3600,
    ):
        if not issuer:
            raise ValueError("issuer is required")
        if not audience:
            raise ValueError("audience is required")
        _check_jwks_url(jwks_url)
        if static_role is not None and static_role not in ROLES:
            raise ValueError(f"static_role must be one of {', '.join(ROLES)}, got {static_role!r}")
        self.issuer = issuer
        self.audience = audience
        self.jwks_url = jwks_url
        self.algorithms = _check_algorithms(algorithms)
        self.role_claim = role_claim
        self.subject_claim = subject_claim
        self.on_behalf_of_claim = on_behalf_of_claim
        self.static_role = static_role
        self.leeway = leeway
        self.cache_seconds = cache_seconds
        self.min_refresh_interval = min_refresh_interval
        self.max_stale_seconds = max_stale_seconds
        self.timeout = timeout
        self._own_session = session is None
        self._session = session if session is not None else requests.Session()
        self._clock = clock
        self._lock = threading.Lock()  # one fetch at a time; guards _last_attempt
        self._keyset = _KeySet({}, None)  # replaced whole, so readers need no lock
        self._last_attempt: float | None = None
        self._last_fetch_failed = False

    # -- verifying -------------------------------------------------------------------------

    def verify(self, token: str) -> Principal:
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise InvalidToken("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("malformed token") from None
        # The allow-list is checked before anything else: "none", HS* (a public key used as
        # an HMAC secret) and anything unexpected never reach a key lookup or a fetch.
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self.algorithms:
            raise InvalidToken("algorithm not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > 256:
            raise InvalidToken("token names no signing key (kid)")
        if _unverified_claims(token).get("iss") != self.issuer:
            raise InvalidToken("wrong issuer")  # someone else's token: not worth a JWKS fetch
        key = self._key(kid)
        if key.algorithm is not None and key.algorithm != algorithm:
            raise InvalidToken("algorithm does not match the signing key")
        # PyJWT 2.15 answers a key object of the wrong family with a TypeError (e.g. an RSA
        # key for ES256: "Expecting a PEM-formatted key."), not a PyJWTError: check first.
        if not isinstance(key.key, _KEY_CLASSES[algorithm[:2]]):
            raise InvalidToken("signing key does not fit the algorithm")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud"], "enforce_minimum_key_length": True},
            )
        except jwt.PyJWTError as e:
            raise InvalidToken(_reason(e)) from None
        except (TypeError, ValueError) as e:  # any other key/algorithm misfit: 401, not 500
            log.warning("token of issuer %s failed verification: %s", self.issuer, type(e).__name__)
            raise InvalidToken("signing key does not fit the algorithm") from None
        return self._principal(claims)

    def _principal(self, claims: dict[str, Any]) -> Principal:
        role = self.static_role if self.static_role is not None else claims.get(self.role_claim)
        return principal_from_claims({
            "sub": claims.get(self.subject_claim),
            "role": role,
            "on_behalf_of": claims.get(self.on_behalf_of_claim),
        })

    # -- keys ------------------------------------------------------------------------------

    def _fresh(self, keyset: _KeySet, now: float) -> bool:
        # A clock that went backwards counts as "expired": better one fetch too many.
        return keyset.fetched_at is not None and 0 <= now - keyset.fetched_at < self.cache_seconds

    def _key(self, kid: str) -> _Key:
        keyset = self._keyset
        if self._fresh(keyset, self._clock()) and kid in keyset.keys:
            return keyset.keys[kid]
        with self._lock:
            # Whoever waited here while another thread fetched sees that fetch's keys, and
            # the throttle below keeps it from fetching again.
            now = self._clock()
            keyset = self._keyset
            if self._fresh(keyset, now) and kid in keyset.keys:
                return keyset.keys[kid]
            since = None if self._last_attempt is None else now - self._last_attempt
            if since is None or since < 0 or since >= self.min_refresh_interval:
                self._last_attempt = now
                try:
                    keyset = self._keyset = _KeySet(self._fetch(), now)
                    self._last_fetch_failed = False
                except _FetchFailed as e:
                    self._last_fetch_failed = True
                    log.warning("JWKS of issuer %s from %s unusable: %s", self.issuer, self.jwks_url, e)
            if kid in keyset.keys:
                assert keyset.fetched_at is not None
                if 0 <= now - keyset.fetched_at < self.cache_seconds + self.max_stale_seconds:
                    return keyset.keys[kid]
                raise InvalidToken("signing keys unavailable")
            if self._last_fetch_failed:
                raise InvalidToken("signing keys unavailable")
            raise InvalidToken("unknown signing key")

    def _fetch(self) -> dict[str, _Key]:
        try:
            with self._session.get(
                self.jwks_url, timeout=self.timeout, allow_redirects=False, stream=True,
                headers={"Accept": "application/jwk-set+json, application/json"},
            ) as response:
                if response.status_code != 200:
                    raise _FetchFailed(f"HTTP {response.status_code}")
                body = bytearray()
                for chunk in response.iter_content(64 * 1024):
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise _FetchFailed(f"response larger than {MAX_JWKS_BYTES} bytes")
        except requests.RequestException as e:
            raise _FetchFailed(type(e).__name__) from None
        try:
            document = json.loads(body)
        except ValueError:
            raise _FetchFailed("not JSON") from None
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise _FetchFailed('no "keys" array')
        keys: dict[str, _Key] = {}
        for entry in entries:
            key = self._parse(entry)
            if key is not None and key.kid not in keys:
                keys[key.kid] = key
        if not keys:
            raise _FetchFailed("no usable signing key")
        return keys

    def _parse(self, entry: Any) -> _Key | None:
        """A verification key from one JWK, or None for one this verifier cannot use."""
        if not isinstance(entry, dict):
            return None
        kid, declared = entry.get("kid"), entry.get("alg")
        if not isinstance(kid, str) or not kid:
            return None
        if entry.get("use", "sig") != "sig" or entry.get("kty") not in _SIGNING_KEY_TYPES:
            return None  # encryption keys; symmetric ("oct") keys are never taken from a JWKS
        ops = entry.get("key_ops")
        if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
            return None
        if declared is not None and declared not in self.algorithms:
            return None
        try:
            return _Key(kid, declared, jwt.PyJWK(entry).key)
        except jwt.PyJWTError:
            return None

    def close(self) -> None:
        if self._own_session:
            self._session.close()


class MultiIssuerVerifier:
    """Dispatches on the token's (not yet verified) ``iss`` to that issuer's verifier, which
    then verifies everything, the issuer included. An unknown issuer is ``InvalidToken``,
    decided without any network request."""

    def __init__(self, verifiers: Mapping[str, TokenVerifier]):
        if not verifiers:
            raise ValueError("at least one issuer is required")
        self._verifiers = dict(verifiers)

    @property
    def issuers(self) -> tuple[str, ...]:
        return tuple(self._verifiers)

    def verify(self, token: str) -> Principal:
        issuer = _unverified_claims(token).get("iss")
        if not isinstance(issuer, str) or not issuer:
            raise InvalidToken("token names no issuer")
        verifier = self._verifiers.get(issuer)
        if verifier is None:
            raise InvalidToken("unknown issuer")
        return verifier.verify(token)

    def close(self) -> None:
        for verifier in self._verifiers.values():
            close = getattr(verifier, "close", None)
            if close is not None:
                close()


# -- configuration -------------------------------------------------------------------------

OIDC_VARIABLES = (
    "OIDC_ISSUERS", "OIDC_ALLOW_DEV_TOKENS",
    "OIDC_NAME_ISSUER", "OIDC_NAME_AUDIENCE", "OIDC_NAME_JWKS_URL",
    "OIDC_NAME_ROLE_CLAIM", "OIDC_NAME_SUBJECT_CLAIM", "OIDC_NAME_ON_BEHALF_OF_CLAIM",
    "OIDC_NAME_STATIC_ROLE", "OIDC_NAME_ALGORITHMS",
)
"""Every variable :func:`verifier_from_env` reads. ``NAME`` is a literal placeholder for each
name listed in ``OIDC_ISSUERS``, upper-cased: ``OIDC_ISSUERS=helseid,idporten`` makes it read
``OIDC_HELSEID_ISSUER``, ``OIDC_IDPORTEN_ISSUER`` and so on.

========================================  =====================================================
``OIDC_ISSUERS``                          comma list of issuer names; unset/empty: dev tokens only
``OIDC_ALLOW_DEV_TOKENS``                 ``true``: also accept dev tokens (issuer ``careplan-dev``)
``OIDC_NAME_ISSUER``                      required: the ``iss`` the tokens carry
``OIDC_NAME_AUDIENCE``                    required: this service's audience (``aud``)
``OIDC_NAME_JWKS_URL``                    required: https URL of the issuer's JWKS
``OIDC_NAME_ROLE_CLAIM``                  claim holding the role (default ``role``)
``OIDC_NAME_SUBJECT_CLAIM``               claim holding the subject (default ``sub``)
``OIDC_NAME_ON_BEHALF_OF_CLAIM``          claim naming the clinician (default ``on_behalf_of``)
``OIDC_NAME_STATIC_ROLE``                 role of every token of this issuer (e.g. ``patient``)
``OIDC_NAME_ALGORITHMS``                  comma list of allowed algorithms (default ``RS256,ES256``)
========================================  =====================================================
"""

_NAME = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*")
_TRUE = ("1", "true", "yes", "on", "y", "t")
_FALSE = ("", "0", "false", "no", "off", "n", "f")


def oidc_variables(names: Sequence[str]) -> tuple[str, ...]:
    """``OIDC_VARIABLES`` with ``NAME`` replaced by each of ``names`` (as in OIDC_ISSUERS)."""
    fixed = tuple(v for v in OIDC_VARIABLES if "_NAME_" not in v)
    per_issuer = tuple(v for v in OIDC_VARIABLES if "_NAME_" in v)
    return fixed + tuple(v.replace("_NAME_", f"_{n.strip().upper()}_") for n in names for v in per_issuer)


def is_oidc_variable(variable: str) -> bool:
    """Whether ``variable`` is one of OIDC_VARIABLES for some issuer name."""
    if variable in OIDC_VARIABLES:
        return True
    for template in OIDC_VARIABLES:
        if "_NAME_" in template:
            prefix, suffix = template.split("NAME")
            middle = variable[len(prefix):-len(suffix)] if variable.startswith(prefix) and variable.endswith(suffix) else ""
            if middle and _NAME.fullmatch(middle):
                return True
    return False


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = (env.get(name) or "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {env.get(name)!r}")


def verifier_from_env(env: Mapping[str, str], dev_verifier: TokenVerifier) -> TokenVerifier:
    """The token verifier a service should use: ``dev_verifier`` unless ``OIDC_ISSUERS`` is
    set, else a :class:`MultiIssuerVerifier` over the named issuers (plus ``dev_verifier``
    for issuer ``careplan-dev`` if ``OIDC_ALLOW_DEV_TOKENS`` is true). See OIDC_VARIABLES.
    Misconfiguration is a ConfigError naming the variable; nothing is fetched here."""
    listed = (env.get("OIDC_ISSUERS") or "").strip()
    if not listed:
        return dev_verifier
    names = [n.strip().upper() for n in listed.split(",")]
    for name in names:
        if not _NAME.fullmatch(name):
            raise ConfigError(f"OIDC_ISSUERS must be a comma list of names like helseid,idporten; got {listed!r}")
    if len(set(names)) != len(names):
        raise ConfigError(f"OIDC_ISSUERS names an issuer twice: {listed!r}")
    allow_dev = _flag(env, "OIDC_ALLOW_DEV_TOKENS")

    verifiers: dict[str, TokenVerifier] = {}
    for name in names:
        def var(suffix: str, name: str = name) -> str:
            return f"OIDC_{name}_{suffix}"

        def required(suffix: str, name: str = name) -> str:
            value = (env.get(var(suffix)) or "").strip()
            if not value:
                raise ConfigError(f"{var(suffix)} is required (OIDC_ISSUERS names {name.lower()})")
            return value

        def optional(suffix: str, default: str | None) -> str | None:
            return (env.get(var(suffix)) or "").strip() or default

        issuer, audience, jwks_url = required("ISSUER"), required("AUDIENCE"), required("JWKS_URL")
        if issuer in verifiers or issuer == DEV_ISSUER:
            raise ConfigError(f"{var('ISSUER')}: issuer {issuer!r} is configured twice or is the dev issuer")
        try:
            _check_jwks_url(jwks_url)
        except ValueError as e:
            raise ConfigError(f"{var('JWKS_URL')}: {e}") from None
        algorithms = [a.strip() for a in (optional("ALGORITHMS", None) or ",".join(DEFAULT_ALGORITHMS)).split(",")]
        try:
            _check_algorithms([a for a in algorithms if a])
        except ValueError as e:
            raise ConfigError(f"{var('ALGORITHMS')}: {e}") from None
        static_role = optional("STATIC_ROLE", None)
        if static_role is not None and static_role not in ROLES:
            raise ConfigError(f"{var('STATIC_ROLE')} must be one of {', '.join(ROLES)}, got {static_role!r}")
        verifiers[issuer] = JwksTokenVerifier(
            issuer=issuer,
            audience=audience,
            jwks_url=jwks_url,
            algorithms=[a for a in algorithms if a],
            role_claim=optional("ROLE_CLAIM", "role") or "role",
            subject_claim=optional("SUBJECT_CLAIM", "sub") or "sub",
            on_behalf_of_claim=optional("ON_BEHALF_OF_CLAIM", "on_behalf_of") or "on_behalf_of",
            static_role=static_role,
        )
    if allow_dev:
        verifiers[DEV_ISSUER] = dev_verifier
    return MultiIssuerVerifier(verifiers)
