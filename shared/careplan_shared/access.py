"""Authentication for Flask views, the same in both services: the bearer token of the request,
verified by ``current_app.extensions["careplan"].verifier``; 401 problem if it does not hold.

Token failures are counted per client address (``request.remote_addr``) in a sliding window:
past the limit the client gets 429 (with Retry-After), even with a good token, until its
oldest counted failure leaves the window. In memory, per process; bounded in size.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import OrderedDict, deque
from typing import Callable, Mapping

from flask import Flask, current_app, g, request
from flask_smorest import abort

from careplan_shared.auth import InvalidToken, Principal, bearer_token
from careplan_shared.config import env_int

# Environment variables read by both services (through this module).
SHARED_VARIABLES = ("CAREPLAN_AUTH_FAILURE_LIMIT", "CAREPLAN_AUTH_FAILURE_WINDOW_SECONDS")
LIMITER_EXTENSION = "careplan.auth_failures"
_install_lock = threading.Lock()


class AuthFailureLimiter:
    """Sliding-window count of authentication failures per client; thread-safe.

    Keeps at most ``limit`` timestamps per client and at most ``max_clients`` clients (the
    least recently failing are forgotten first), so memory stays bounded under any load.
    ``limit=0`` turns the limiter off.
    """

    def __init__(self, limit: int = 20, window_seconds: float = 60.0, *,
                 clock: Callable[[], float] = time.monotonic, max_clients: int = 10_000):
        self.limit, self.window, self.clock, self.max_clients = limit, float(window_seconds), clock, max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs) -> AuthFailureLimiter:
        env = os.environ if env is None else env
        return cls(env_int(env, "CAREPLAN_AUTH_FAILURE_LIMIT", 20, 0, 1_000_000),
                   env_int(env, "CAREPLAN_AUTH_FAILURE_WINDOW_SECONDS", 60, 1, 86_400), **kwargs)

    def retry_after(self, client: str) -> int | None:
        """Seconds until ``client`` may try again; None if it may now."""
        if self.limit <= 0:
            return None
        with self._lock:
            failures = self._failures.get(client)
            if failures is None:
                return None
            now = self.clock()
            self._expire(client, failures, now)
            if len(failures) < self.limit:
                return None
            return max(1, math.ceil(failures[0] + self.window - now))

    def failed(self, client: str) -> None:
        if self.limit <= 0:
            return
        with self._lock:
            now = self.clock()
            failures = self._failures.get(client)
            if failures is None:
                failures = self._failures[client] = deque(maxlen=self.limit)
            failures.append(now)
            self._failures.move_to_end(client)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)
            # forget clients whose last failure has left the window (oldest first; cheap)
            while self._failures:
                oldest_client, oldest = next(iter(self._failures.items()))
                if oldest[-1] > now - self.window:
                    break
                del self._failures[oldest_client]

    def _expire(self, client: str, failures: deque[float], now: float) -> None:
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[client]

    def __len__(self) -> int:
        return len(self._failures)


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


def authenticate() -> Principal:
    principal = g.get("principal")
    if principal is not None:
        return principal
    limiter = _limiter()
    client = request.remote_addr or "unknown"
    retry_after = limiter.retry_after(client)
    if retry_after is not None:
        abort(429, message="too many failed authentication attempts from this client; try again later",
              headers={"Retry-After": str(retry_after)})
    try:
        token = bearer_token(request.headers.get("Authorization"))
        principal = current_app.extensions["careplan"].verifier.verify(token)
    except InvalidToken as e:
        limiter.failed(client)
        abort(401, message=f"a valid bearer token is required ({e})",
              headers={"WWW-Authenticate": 'Bearer realm="careplan"'})
    g.principal = principal
    return principal
