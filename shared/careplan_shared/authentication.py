"""Authentication for Flask views, the same in both services: the bearer token of the request,
verified by ``current_app.extensions["careplan"].verifier``; 401 problem if it does not hold.

Token failures are counted per client address (``request.remote_addr``) in a sliding window.
The limit never refuses a valid token: many clients can share one address (a NAT, a proxy,
notification-service polling plan-service from 127.0.0.1), and one of them guessing must not
lock the others out. Past the limit it only makes failures cheap and visible: credentials that
already failed from that client get 429 (with Retry-After) without being verified again; any
other token is verified as usual: a valid one passes, an invalid one is counted and gets 429.
Credentials are remembered as keyed hashes, never in clear; in memory, per process; bounded.
"""

from __future__ import annotations

import hashlib
import math
import os
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping

from flask import Flask, current_app, g, request
from flask_smorest import abort

from careplan_shared.auth import InvalidToken, Principal, bearer_token
from careplan_shared.config import env_int

# Environment variables read by both services (through this module).
SHARED_VARIABLES = ("CAREPLAN_AUTH_FAILURE_LIMIT", "CAREPLAN_AUTH_FAILURE_WINDOW_SECONDS")
LIMITER_EXTENSION = "careplan.auth_failures"
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


def install_auth_failure_limit(app: Flask, limiter: AuthFailureLimiter | None = None) -> AuthFailureLimiter:
    """Give ``app`` its limiter (from CAREPLAN_AUTH_FAILURE_* unless given). Call it in
    create_app() to read the settings at start-up; otherwise the first request does."""
    if limiter is None:
        limiter = AuthFailureLimiter.from_env()
    app.extensions[LIMITER_EXTENSION] = limiter
    return limiter


def _limiter() -> AuthFailureLimiter:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    limiter = app.extensions.get(LIMITER_EXTENSION)
    if limiter is None:
        with _install_lock:
            limiter = app.extensions.get(LIMITER_EXTENSION)
            if limiter is None:
                limiter = install_auth_failure_limit(app)
    return limiter


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
        principal = current_app.extensions["careplan"].verifier.verify(token)
    except InvalidToken as e:
        retry_after = limiter.failed(client, None if str(e) in MAY_PASS_LATER else fingerprint)
        if retry_after is not None:
            _too_many(retry_after)
        abort(401, message=f"a valid bearer token is required ({e})",
              headers={"WWW-Authenticate": 'Bearer realm="careplan"'})
    g.principal = principal
    return principal
