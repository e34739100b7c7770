"""Production bearer tokens: JWTs from OIDC issuers, verified against the issuer's JWKS.

HelseID issues the clinicians' (and the EPR integrations') tokens, ID-porten the citizens'.
Each issuer gets one :class:`JwksTokenVerifier`; :class:`MultiIssuerVerifier` picks one by
the token's ``iss``, so a service accepts both at once (and, if asked, the embedded dev
tokens too). :func:`verifier_from_env` builds that from environment variables and falls back
to the dev verifier when no issuer is configured. Every verifier has the same
``verify(token) -> Principal`` call as :class:`careplan_shared.auth.DevTokenVerifier`, and
every failure - a bad token or an unreachable JWKS endpoint alike - is ``InvalidToken``
(-> 401, never 500), with a short reason that never quotes the token.

The JOSE work is joserfc's: the JWKS entries become joserfc keys, ``joserfc.jwt.decode``
verifies the signature (allowed algorithms: this issuer's, asymmetric only; the key must fit
the algorithm), ``JWTClaimsRegistry`` the claims (``iss``, ``aud``, ``exp`` required; ``nbf``
and ``iat`` if present; with leeway). What is left here is policy: which algorithms, which
token type (RFC 9068 access tokens, so an ID token never passes as a bearer token), and the
keys' fetching and caching.

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

import requests
from joserfc import jwk, jws, jwt
from joserfc.errors import JoseError

from careplan_shared.auth import DEV_ISSUER, ROLES, InvalidToken, Principal, principal_from_claims, token_error_reason
from careplan_shared.config import ConfigError, env_flag

log = logging.getLogger(__name__)

# Only asymmetric signatures: a JWKS publishes public keys. HS* (shared secrets) and "none"
# can never be allowed, whatever the configuration says.
ASYMMETRIC_ALGORITHMS = frozenset({
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
})
DEFAULT_ALGORITHMS = ("RS256", "ES256")
DEFAULT_ACCESS_TOKEN_TYPES = ("at+jwt",)  # RFC 9068; ``None``: any typ, or none
MAX_TOKEN_CHARS = 16_384
MAX_JWKS_BYTES = 512 * 1024
MIN_RSA_BITS = 2048  # joserfc only warns about shorter RSA keys
_SIGNING_KEY_TYPES = ("RSA", "EC", "OKP")
_MEDIA_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]+(?:/[a-z0-9!#$&^_.+-]+)?")


class TokenVerifier(Protocol):
    def verify(self, token: str) -> Principal: ...


@dataclass(frozen=True)
class _KeySet:
    keys: Mapping[str, jwk.Key]  # kid -> public key (joserfc), each a signing key
    fetched_at: float | None  # clock() of the fetch; None: never fetched


class _FetchFailed(Exception):
    pass


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


def _media_type(typ: str) -> str:
    """A ``typ`` as the media type it names: RFC 7515 4.1.9 lets ``application/`` be left off."""
    typ = typ.strip().lower()
    return typ if "/" in typ else f"application/{typ}"


def _check_token_types(types: Sequence[str] | None) -> frozenset[str] | None:
    if types is None:
        return None
    if isinstance(types, str) or not types or not all(isinstance(t, str) and _MEDIA_TYPE.fullmatch(_media_type(t)) for t in types):
        raise ValueError(f"access token types must be a list of media types like at+jwt, or None for any; got {types!r}")
    return frozenset(_media_type(t) for t in types)


def _peek(token: Any, registry: jws.JWSRegistry | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, unverified (joserfc's parser): for choosing the
    issuer, the key and whether it is worth verifying at all."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise InvalidToken("malformed token")
    try:
        obj = jws.extract_compact(token.encode("ascii"), registry=registry)
        header, claims = obj.headers(), json.loads(obj.payload)
    except (JoseError, ValueError, TypeError, RecursionError):
        raise InvalidToken("malformed token") from None
    # A JWT's payload is base64url, never RFC 7797's unencoded content ("b64": false).
    if not isinstance(header, dict) or not isinstance(claims, dict) or "b64" in header:
        raise InvalidToken("malformed token")
    return header, claims


def _unverified_claims(token: Any) -> dict[str, Any]:
    return _peek(token)[1]


class JwksTokenVerifier:
    """Verifies one OIDC issuer's JWTs against that issuer's JWKS.

    ``static_role`` (e.g. ``"patient"`` for ID-porten, whose tokens say nothing about a role)
    is every token's role, and any role claim in the token is ignored. Otherwise the role is
    read from ``role_claim`` and must be one of ``auth.ROLES``. Claim names are looked up as
    flat keys, so long HelseID-style names (``"helseid://claims/identity/pid"``) work as they
    are.

    ``access_token_types``: the JOSE header ``typ`` a token must have (case-insensitive, with
    or without ``application/``); by default ``at+jwt`` (RFC 9068), so an ID token (``JWT``)
    is refused. ``None`` turns the check off, for an issuer whose access tokens carry no typ.

    ``clock`` drives the key cache and the refetch throttle only; ``exp``, ``nbf`` and ``iat``
    are checked against the wall clock.
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
        access_token_types: Sequence[str] | None = DEFAULT_ACCESS_TOKEN_TYPES,
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
        self.access_token_types = _check_token_types(access_token_types)
        self.role_claim = role_claim
        self.subject_claim = subject_claim
        self.on_behalf_of_claim = on_behalf_of_claim
        self.static_role = static_role
        self.leeway = leeway
        self.cache_seconds = cache_seconds
        self.min_refresh_interval = min_refresh_interval
        self.max_stale_seconds = max_stale_seconds
        self.timeout = timeout
        # joserfc refuses any algorithm not in this list (the check below makes sure of it
        # before a key is looked up, too). Header parameters it does not know are let through,
        # as issuers add their own; "crit" ones it does not know are still refused.
        self._registry = jws.JWSRegistry(algorithms=list(self.algorithms), strict_check_header=False)
        self._own_session = session is None
        self._session = session if session is not None else requests.Session()
        self._clock = clock
        self._lock = threading.Lock()  # one fetch at a time; guards _last_attempt
        self._keyset = _KeySet({}, None)  # replaced whole, so readers need no lock
        self._last_attempt: float | None = None
        self._last_fetch_failed = False

    # -- verifying -------------------------------------------------------------------------

    def verify(self, token: str) -> Principal:
        header, unverified = _peek(token, self._registry)
        # The allow-list is checked before anything else: "none", HS* (a public key used as
        # an HMAC secret) and anything unexpected never reach a key lookup or a fetch.
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self.algorithms:
            raise InvalidToken("algorithm not allowed")
        if self.access_token_types is not None:
            typ = header.get("typ")
            if not isinstance(typ, str) or _media_type(typ) not in self.access_token_types:
                raise InvalidToken("not an access token")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > 256:
            raise InvalidToken("token names no signing key (kid)")
        if unverified.get("iss") != self.issuer:
            raise InvalidToken("wrong issuer")  # someone else's token: not worth a JWKS fetch
        key = self._key(kid)
        if isinstance(key, jwk.RSAKey) and key.public_key.key_size < MIN_RSA_BITS:
            raise InvalidToken("signing key does not fit the algorithm")
        claims: dict[str, Any] = {}
        try:
            # Signature only (the key must suit the algorithm: type, curve, its "alg")...
            claims = jwt.decode(token, key, registry=self._registry).claims
            # ... then the claims.
            jwt.JWTClaimsRegistry(
                leeway=int(self.leeway),
                iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.audience},
                exp={"essential": True},
            ).validate(claims)
        except JoseError as e:
            raise InvalidToken(token_error_reason(e, claims)) from None
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

    def _key(self, kid: str) -> jwk.Key:
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

    def _fetch(self) -> dict[str, jwk.Key]:
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
        except (ValueError, RecursionError):
            raise _FetchFailed("not JSON") from None
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise _FetchFailed('no "keys" array')
        keys: dict[str, jwk.Key] = {}
        for entry in entries:
            if self._usable(entry) and entry["kid"] not in keys:
                # One entry at a time, as KeySet.import_key_set would refuse the whole set for
                # one malformed key (it skips only unknown key types).
                try:
                    keys[entry["kid"]] = jwk.import_key(entry)
                except Exception:  # noqa: BLE001 - whatever a malformed JWK raises: skip that entry
                    continue
        if not keys:
            raise _FetchFailed("no usable signing key")
        return keys

    def _usable(self, entry: Any) -> bool:
        """Whether one JWKS entry is a signing key this verifier may use."""
        if not isinstance(entry, dict):
            return False
        kid, declared = entry.get("kid"), entry.get("alg")
        if not isinstance(kid, str) or not kid:
            return False
        if entry.get("use", "sig") != "sig" or entry.get("kty") not in _SIGNING_KEY_TYPES:
            return False  # encryption keys; symmetric ("oct") keys are never taken from a JWKS
        ops = entry.get("key_ops")
        if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
            return False
        return declared is None or declared in self.algorithms

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
    "OIDC_NAME_STATIC_ROLE", "OIDC_NAME_ALGORITHMS", "OIDC_NAME_ACCESS_TOKEN_TYPES",
    # the pages' login through this issuer (careplan_shared.pages.settings)
    "OIDC_NAME_CLIENT_ID", "OIDC_NAME_CLIENT_SECRET", "OIDC_NAME_DISCOVERY_URL", "OIDC_NAME_LOGIN_ROLES",
    "OIDC_NAME_SCOPE", "OIDC_NAME_LABEL",
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
``OIDC_NAME_ACCESS_TOKEN_TYPES``          comma list of accepted JOSE ``typ`` values (default ``at+jwt``);
                                          ``any``: no check (for an issuer that sends no typ)
``OIDC_NAME_CLIENT_ID`` ... ``_LABEL``    the pages' login through this issuer: see
                                          careplan_shared.pages.settings
========================================  =====================================================
"""

_NAME = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*")


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


def dev_tokens_accepted(env: Mapping[str, str]) -> bool:
    """Whether :func:`verifier_from_env` accepts dev tokens (the pages' development login
    exists only then)."""
    return not (env.get("OIDC_ISSUERS") or "").strip() or env_flag(env, "OIDC_ALLOW_DEV_TOKENS")


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
    allow_dev = dev_tokens_accepted(env)

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
        types = [t.strip() for t in (optional("ACCESS_TOKEN_TYPES", None) or ",".join(DEFAULT_ACCESS_TOKEN_TYPES)).split(",")]
        access_token_types: list[str] | None = [t for t in types if t]
        try:
            if access_token_types and "any" in (t.lower() for t in access_token_types):
                if len(access_token_types) > 1:
                    raise ValueError(f"any stands alone, got {types!r}")
                access_token_types = None
            _check_token_types(access_token_types)
        except ValueError as e:
            raise ConfigError(f"{var('ACCESS_TOKEN_TYPES')}: {e}") from None
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
            access_token_types=access_token_types,
        )
    if allow_dev:
        verifiers[DEV_ISSUER] = dev_verifier
    return MultiIssuerVerifier(verifiers)
