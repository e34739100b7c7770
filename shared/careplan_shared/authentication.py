"""Authentication for Flask views, the same in both services: the bearer token of the request,
verified by ``current_app.extensions["careplan"].verifier``; 401 problem if it does not hold.

Token failures are counted per client address (``request.remote_addr``) in a sliding window.
The limit never refuses a valid token: many clients can share one address (a NAT, a proxy,
notification-service polling plan-service from 127.0.0.1), and one of them guessing must not
lock the others out. Past the limit it only makes failures cheap and visible: credentials that
already failed from that client get 429 (with Retry-After) without being verified again; any
other token is verified as usual: a valid one passes, an invalid one is counted and gets 429.
Credentials are remembered as keyed hashes, never in clear; in memory, per process; bounded.

A token whose signature and claims held is verified once: its Principal is kept by a keyed hash
of the token (``VerifiedTokens``: bounded, least recently used first out, thread-safe) until the
token's ``exp``, never past it, and at most ``max_age_seconds``; and only while the verifier's
signing keys are the ones it was verified with (a JWKS refetch, e.g. on rotation, sends every
token through the verifier again). Nothing is kept for a token that failed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import os
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from flask import Flask, current_app, g, request
from flask_smorest import abort

from careplan_shared.auth import InvalidToken, Principal, bearer_token
from careplan_shared.config import env_int

# Environment variables read by both services (through this module).
SHARED_VARIABLES = ("CAREPLAN_AUTH_FAILURE_LIMIT", "CAREPLAN_AUTH_FAILURE_WINDOW_SECONDS")
LIMITER_EXTENSION = "careplan.auth_failures"
TOKENS_EXTENSION = "careplan.verified_tokens"
_install_lock = threading.Lock()

# Failures that say nothing lasting about the token: the same token may pass a moment later
# (the issuer's keys were unreachable or just rotated; nbf not reached yet). They are counted,
# but the token is not remembered as bad, so it is always verified again.
MAY_PASS_LATER = frozenset({
    "signing keys unavailable", "unknown signing key",  # oidc.JwksTokenVerifier
    "token not yet valid",                               # oidc / auth.DevTokenVerifier
})


class _Client:
    """One client's failures in the window: their times (oldest first) and the fingerprints of
    the credentials that failed, each with its last failure time (oldest first)."""

    __slots__ = ("times", "credentials")

    def __init__(self, limit: int):
        self.times: deque[float] = deque(maxlen=limit)
        self.credentials: OrderedDict[bytes, float] = OrderedDict()


class AuthFailureLimiter:
    """Sliding-window count of authentication failures per client; thread-safe.

    Keeps at most ``limit`` timestamps and ``credentials_per_client`` fingerprints per client
    and at most ``max_clients`` clients (the least recently failing are forgotten first), so
    memory stays bounded under any load (some 35 MB at the defaults with 10,000 addresses
    failing at once). ``limit=0`` turns the limiter off.
    """

    def __init__(self, limit: int = 20, window_seconds: float = 60.0, *,
                 clock: Callable[[], float] = time.monotonic, max_clients: int = 10_000,
                 credentials_per_client: int = 8):
        self.limit, self.window, self.clock, self.max_clients = limit, float(window_seconds), clock, max_clients
        self.credentials_per_client = credentials_per_client
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._lock = threading.Lock()
        self._key = secrets.token_bytes(32)  # fingerprints mean nothing outside this process

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs) -> AuthFailureLimiter:
        env = os.environ if env is None else env
        return cls(env_int(env, "CAREPLAN_AUTH_FAILURE_LIMIT", 20, 0, 1_000_000),
                   env_int(env, "CAREPLAN_AUTH_FAILURE_WINDOW_SECONDS", 60, 1, 86_400), **kwargs)

    def fingerprint(self, credentials: str | None) -> bytes:
        """A keyed hash of what the client sent (its Authorization header, or nothing)."""
        data = (credentials or "").encode("utf-8", "surrogatepass")
        return hashlib.blake2b(data, key=self._key, digest_size=16).digest()

    def refused(self, client: str, fingerprint: bytes) -> int | None:
        """Retry-After seconds if ``client`` is over the limit and these credentials already
        failed from it in the window: answer 429 without verifying them again. None: verify."""
        if self.limit <= 0:
            return None
        with self._lock:
            entry = self._clients.get(client)
            if entry is None:
                return None
            now = self.clock()
            if not self._expire(client, entry, now):
                return None
            if len(entry.times) < self.limit or fingerprint not in entry.credentials:
                return None
            return self._retry_after(entry, now)

    def failed(self, client: str, fingerprint: bytes | None = None) -> int | None:
        """Count a failed authentication (and remember ``fingerprint`` as bad, if given).
        Retry-After seconds if ``client`` was already over the limit (answer 429, not 401)."""
        if self.limit <= 0:
            return None
        with self._lock:
            now = self.clock()
            entry = self._clients.get(client)
            if entry is None or not self._expire(client, entry, now):
                entry = self._clients[client] = _Client(self.limit)
            over = len(entry.times) >= self.limit
            entry.times.append(now)
            if fingerprint is not None:
                entry.credentials[fingerprint] = now
                entry.credentials.move_to_end(fingerprint)
                while len(entry.credentials) > self.credentials_per_client:
                    entry.credentials.popitem(last=False)
            self._clients.move_to_end(client)
            while len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)
            # forget clients whose last failure has left the window (oldest first; cheap)
            while self._clients:
                oldest_client, oldest = next(iter(self._clients.items()))
                if oldest.times[-1] > now - self.window:
                    break
                del self._clients[oldest_client]
            return self._retry_after(entry, now) if over else None

    def retry_after(self, client: str) -> int | None:
        """Seconds until ``client`` is under the limit again; None if it is now."""
        if self.limit <= 0:
            return None
        with self._lock:
            entry = self._clients.get(client)
            now = self.clock()
            if entry is None or not self._expire(client, entry, now) or len(entry.times) < self.limit:
                return None
            return self._retry_after(entry, now)

    def _retry_after(self, entry: _Client, now: float) -> int:
        # the oldest failure kept is the one whose leaving brings the count under the limit
        return max(1, math.ceil(entry.times[0] + self.window - now))

    def _expire(self, client: str, entry: _Client, now: float) -> bool:
        """Drop what has left the window; False (and the client forgotten) if nothing is left."""
        cutoff = now - self.window
        while entry.times and entry.times[0] <= cutoff:
            entry.times.popleft()
        while entry.credentials and next(iter(entry.credentials.values())) <= cutoff:
            entry.credentials.popitem(last=False)
        if not entry.times:
            del self._clients[client]
            return False
        return True

    def __len__(self) -> int:
        return len(self._clients)


def _keys_now(verifier: object) -> tuple[object, ...]:
    """The signing keys ``verifier`` holds now, as objects that are replaced whole when they change:
    each JWKS verifier's key set (careplan_shared.oidc; one per issuer behind a
    MultiIssuerVerifier). A verifier with fixed keys (the dev verifier) gives ``()``."""
    inner = getattr(verifier, "_verifiers", None)
    if isinstance(inner, Mapping):
        return tuple(keys for v in inner.values() for keys in _keys_now(v))
    keyset = getattr(verifier, "_keyset", None)
    return () if keyset is None else (keyset,)


def _same_keys(then: tuple[object, ...], now: tuple[object, ...]) -> bool:
    # by identity: a key set is never changed in place, only replaced
    return len(then) == len(now) and all(a is b for a, b in zip(then, now, strict=True))


def token_expiry(token: str) -> float | None:
    """The ``exp`` of a compact JWS's payload, read without verifying anything: call it only for
    a token its verifier has just accepted (then the payload is the one that was signed)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):  # orjson.JSONDecodeError is a ValueError
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if not isinstance(exp, int | float) or isinstance(exp, bool) or not math.isfinite(exp):
        return None
    return float(exp)


class _Verified:
    __slots__ = ("principal", "until", "verifier", "keys")

    def __init__(self, principal: Principal, until: float, verifier: object, keys: tuple[object, ...]):
        self.principal, self.until, self.verifier, self.keys = principal, until, verifier, keys


class VerifiedTokens:
    """Principals of tokens that passed verification, by a keyed hash of the token; thread-safe.

    An entry holds until the token's ``exp`` (no leeway: past it the token goes through the
    verifier again, which refuses it once its leeway is over too) and at most ``max_age_seconds``
    after the verification, for the verifier that verified it and while that verifier's signing
    keys are unchanged. At most ``max_entries`` (the least recently used leave first).
    ``clock``: wall-clock seconds, as ``exp`` is; ``time.time`` looked up at each call.
    """

    def __init__(self, max_entries: int = 10_000, max_age_seconds: float = 300.0,
                 clock: Callable[[], float] | None = None):
        self.max_entries, self.max_age = max_entries, float(max_age_seconds)
        self._clock = clock
        self._entries: OrderedDict[bytes, _Verified] = OrderedDict()
        self._lock = threading.Lock()
        self._key = secrets.token_bytes(32)  # the hashes mean nothing outside this process

    def _now(self) -> float:
        return self._clock() if self._clock is not None else time.time()

    def _hash(self, token: str) -> bytes:
        return hashlib.blake2b(token.encode("utf-8", "surrogatepass"), key=self._key, digest_size=32).digest()

    def verify(self, verifier: Any, token: str) -> Principal:
        """``verifier.verify(token)``, or its Principal from a verification that still holds.
        Raises what the verifier raises (InvalidToken); a failure is never kept."""
        if self.max_entries <= 0:
            return verifier.verify(token)
        digest = self._hash(token)
        keys = _keys_now(verifier)
        with self._lock:
            entry = self._entries.get(digest)
            if entry is not None:
                now = self._now()
                if entry.verifier is verifier and _same_keys(entry.keys, keys) and now < entry.until:
                    self._entries.move_to_end(digest)
                    return entry.principal
                del self._entries[digest]
        principal = verifier.verify(token)
        expires = token_expiry(token)
        if expires is not None:
            now = self._now()
            until = min(expires, now + self.max_age)
            if now < until:
                with self._lock:
                    self._entries[digest] = _Verified(principal, until, verifier, keys)
                    self._entries.move_to_end(digest)
                    while len(self._entries) > self.max_entries:
                        self._entries.popitem(last=False)
        return principal

    def __len__(self) -> int:
        return len(self._entries)


def install_auth_failure_limit(app: Flask, limiter: AuthFailureLimiter | None = None) -> AuthFailureLimiter:
    """Give ``app`` its limiter (from CAREPLAN_AUTH_FAILURE_* unless given). Call it in
    create_app() to read the settings at start-up; otherwise the first request does."""
    if limiter is None:
        limiter = AuthFailureLimiter.from_env()
    app.extensions[LIMITER_EXTENSION] = limiter
    return limiter


def _installed(name: str, install: Callable[[Flask], Any]) -> Any:
    """The app's extension ``name``, installed once on first use (racing threads agree)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    found = app.extensions.get(name)
    if found is None:
        with _install_lock:
            found = app.extensions.get(name)
            if found is None:
                found = install(app)
    return found


def _limiter() -> AuthFailureLimiter:
    return _installed(LIMITER_EXTENSION, install_auth_failure_limit)


def install_verified_tokens(app: Flask, tokens: VerifiedTokens | None = None) -> VerifiedTokens:
    """Give ``app`` its cache of verified tokens (otherwise the first request makes one)."""
    tokens = tokens if tokens is not None else VerifiedTokens()
    app.extensions[TOKENS_EXTENSION] = tokens
    return tokens


def _verified_tokens() -> VerifiedTokens:
    return _installed(TOKENS_EXTENSION, install_verified_tokens)


def _too_many(retry_after: int):
    abort(429, message="too many failed authentication attempts from this client, and these "
                       "credentials are not valid; a valid token is still accepted",
          headers={"Retry-After": str(retry_after)})


def authenticate() -> Principal:
    principal = g.get("principal")
    if principal is not None:
        return principal
    limiter = _limiter()
    client = request.remote_addr or "unknown"
    authorization = request.headers.get("Authorization")
    fingerprint = limiter.fingerprint(authorization)
    retry_after = limiter.refused(client, fingerprint)
    if retry_after is not None:
        _too_many(retry_after)
    try:
        token = bearer_token(authorization)
        principal = _verified_tokens().verify(current_app.extensions["careplan"].verifier, token)
    except InvalidToken as e:
        retry_after = limiter.failed(client, None if str(e) in MAY_PASS_LATER else fingerprint)
        if retry_after is not None:
            _too_many(retry_after)
        abort(401, message=f"a valid bearer token is required ({e})",
              headers={"WWW-Authenticate": 'Bearer realm="careplan"'})
    g.principal = principal
    return principal
