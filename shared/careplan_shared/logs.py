"""Structured logs: one JSON object per line; never plan content, never tokens.

Log records carry only what is passed in ``extra`` under whitelisted keys, plus the message,
which callers keep to fixed strings. Request logs name the route template, not the path; so
do unhandled errors (Flask's own ``log_exception`` would name the path, plan ids and all).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
import uuid
from datetime import datetime, timezone

from flask import Flask, g, request

SAFE_KEYS = (
    "service", "request_id", "method", "route", "status", "duration_ms", "role",
    "error_type", "plan_version", "events", "batch_size", "position", "reason",
    "port", "url", "count", "channel",
)


# json.dumps(entry, ensure_ascii=False) makes a new encoder for every call; this one is made once.
_ENCODER = json.JSONEncoder(ensure_ascii=False)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service
        self._second: tuple[int, str] = (-1, "")  # the last second formatted (a request log writes many a second)

    def _timestamp(self, created: float) -> str:
        """``datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="milliseconds")``,
        with the date and time of day formatted once a second."""
        fraction, whole = math.modf(created)  # as datetime rounds it: microseconds, half to even
        microsecond = round(fraction * 1e6)
        second = int(whole) + (microsecond >= 1_000_000)
        millisecond = (microsecond % 1_000_000) // 1000
        cached = self._second  # one read: another thread may replace it, never half
        if cached[0] != second:
            cached = (second, datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))
            self._second = cached
        return f"{cached[1]}.{millisecond:03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self._timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "service": self.service,
            "msg": record.getMessage(),
        }
        fields = record.__dict__
        for key in SAFE_KEYS:
            value = fields.get(key)
            if value is not None:
                entry[key] = value
        return _ENCODER.encode(entry)


# Libraries whose own messages can carry what passes through them (kafka-python logs whole
# records at DEBUG, drivers log queries): never below WARNING, whatever LOG_LEVEL says.
LIBRARY_LOGGERS = ("kafka", "urllib3", "requests", "psycopg", "psycopg_pool", "eventsourcing", "werkzeug",
                   "aiosmtpd", "mail.log")


def configure(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def _request_id() -> str:
    given = request.headers.get("X-Request-Id", "")
    if 0 < len(given) <= 64 and given.replace("-", "").isalnum():
        return given
    return uuid.uuid4().hex


def _route() -> str:
    return request.url_rule.rule if request.url_rule else "(no route)"


def log_unhandled(error: BaseException | None) -> None:
    """An error no handler answered: its type, the route template and the request id; never
    the path, the exception text or the traceback (either may hold plan content)."""
    logging.getLogger("careplan.errors").error(
        "unhandled error",
        extra={"error_type": type(error).__name__, "request_id": g.get("request_id"),
               "method": request.method, "route": _route()},
    )


def install_error_logging(app: Flask) -> None:
    """Flask calls ``app.log_exception`` for an error no handler answered (one raised in an
    after_request hook or an error handler, or any error without problem.install); its
    default writes "Exception on <path>" with the traceback. Ours: see log_unhandled."""

    def _log_exception(exc_info) -> None:
        log_unhandled(exc_info[1])

    app.log_exception = _log_exception  # type: ignore[method-assign]


def install_request_logging(app: Flask) -> None:
    log = logging.getLogger("careplan.http")
    install_error_logging(app)

    @app.before_request
    def _start() -> None:
        g.request_id = _request_id()
        g.started = time.perf_counter()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("request started", extra={"request_id": g.request_id, "method": request.method,
                                                "route": request.url_rule.rule if request.url_rule else None})

    @app.after_request
    def _finish(response):
        state, req = g._get_current_object(), request._get_current_object()  # type: ignore[attr-defined]  # each proxy once
        started = state.get("started")
        duration = (time.perf_counter() - started) * 1000 if started else None
        principal = state.get("principal")
        request_id = state.get("request_id")
        if log.isEnabledFor(logging.INFO):
            log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": req.method,
                    "route": req.url_rule.rule if req.url_rule else "(no route)",
                    "status": response.status_code,
                    "duration_ms": round(duration, 2) if duration is not None else None,
                    "role": principal.role if principal else None,
                },
            )
        response.headers["X-Request-Id"] = request_id or ""
        return response
