"""Serve a Flask app with gunicorn (threaded workers); the same for both services.

What gunicorn answers itself, before any app sees the request (a header over 8 KB, a request
line over 4 KB, malformed HTTP), leaves as application/problem+json with the apps' security
headers, like everything else; its log line names the error type only (gunicorn's own would
quote the request line or the header, which can hold a plan id or a token).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from ssl import SSLError
from typing import Any

from gunicorn import util
from gunicorn.app.base import BaseApplication
from gunicorn.http import errors
from gunicorn.workers.gthread import ThreadWorker

from careplan_shared.metrics import mark_worker_dead
from careplan_shared.web import SECURITY_HEADERS

PROBLEM_JSON = "application/problem+json"


def gunicorn_problem(exc: BaseException, cfg: Any) -> tuple[int, str, str]:
    """(status, title, detail) for an error gunicorn met reading a request; as gunicorn
    27's Worker.handle_error classifies them, but never quoting the request."""
    if isinstance(exc, (errors.InvalidResponseHeader, errors.InvalidResponseHeaderName)):
        pass  # the app's fault (a header it tried to send): 500 below
    elif isinstance(exc, errors.LimitRequestHeaders):
        if exc.msg == "limit request headers fields":
            detail = f"too many request header fields (at most {cfg.limit_request_fields})"
        elif exc.msg.startswith("limit request headers fields size"):
            detail = f"a request header field (name and value) is over {cfg.limit_request_field_size} bytes"
        else:
            detail = "the request headers are too large"
        return 431, "Request Header Fields Too Large", detail
    elif isinstance(exc, errors.LimitRequestLine):
        return 414, "URI Too Long", f"the request line (method, path and query) is over {cfg.limit_request_line} bytes"
    elif isinstance(exc, errors.UnsupportedTransferCoding):
        return 501, "Not Implemented", "Transfer-Encoding: only chunked is supported"
    elif isinstance(exc, errors.ExpectationFailed):
        return 417, "Expectation Failed", "Expect: only 100-continue is supported"
    elif isinstance(exc, (errors.ForbiddenProxyRequest, SSLError)):
        return 403, "Forbidden", "request forbidden"
    elif isinstance(exc, errors.InvalidRequestMethod):
        return 400, "Bad Request", "the request method is not valid HTTP"
    elif isinstance(exc, errors.InvalidHTTPVersion):
        return 400, "Bad Request", "the HTTP version is not supported"
    elif isinstance(exc, errors.InvalidRequestLine):
        return 400, "Bad Request", "the request line is not valid HTTP"
    elif isinstance(exc, (errors.InvalidHeader, errors.InvalidHeaderName, errors.ObsoleteFolding)):
        return 400, "Bad Request", "a request header (name or value) is not valid HTTP"
    elif isinstance(exc, (errors.InvalidChunkSize, errors.ChunkMissingTerminator, errors.InvalidChunkExtension)):
        return 400, "Bad Request", "the chunked request body is not valid"
    elif isinstance(exc, (errors.InvalidProxyLine, errors.InvalidSchemeHeaders, errors.InvalidH2CPreface)):
        return 400, "Bad Request", "the request is not valid HTTP"
    return 500, "Internal Server Error", "The server could not complete the request."


def problem_response(status: int, title: str, detail: str) -> bytes:
    """A whole HTTP/1.1 response: problem+json body, security headers, connection closed."""
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail}).encode()
    headers = {"Connection": "close", "Content-Type": PROBLEM_JSON, "Content-Length": str(len(body)),
               **SECURITY_HEADERS}
    head = f"HTTP/1.1 {status} {title}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode("latin-1") + body


class ProblemThreadWorker(ThreadWorker):
    """gunicorn's gthread worker whose own error answers are problem+json (see the module)."""

    def handle_error(self, req, client, addr, exc):
        status, title, detail = gunicorn_problem(exc, self.cfg)
        if status >= 500:
            self.log.error("Error handling request: %s", type(exc).__name__)
        else:
            self.log.warning("Invalid request (%d): %s", status, type(exc).__name__)
        try:
            util.write_nonblock(client, problem_response(status, title, detail))
        except Exception:  # noqa: BLE001 - the client may be gone; nothing more to tell it
            self.log.debug("Failed to send error message.")


class _Gunicorn(BaseApplication):
    def __init__(self, load: Callable[[], Any], settings: dict[str, Any]):
        self._load, self._settings = load, settings
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._settings.items():
            self.cfg.set(key, value)

    def load(self):
        return self._load()


def serve(load: Callable[[], Any], *, host: str, port: int, workers: int, threads: int, ready_message: str) -> None:
    """``load`` runs in each worker process after the fork: create the app (and its threads) there."""
    settings = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": ProblemThreadWorker,  # gthread, with problem+json error answers
        "threads": threads,
        "timeout": 60,
        "graceful_timeout": 10,
        "keepalive": 5,
        "accesslog": None,  # the apps write their own structured request log
        # gunicorn 27 opens one control socket per user (~/.gunicorn): every instance and test
        # server would share it. Nothing here uses it.
        "control_socket_disable": True,
        "when_ready": lambda server: print(ready_message, file=sys.stderr, flush=True),
        # metrics (multiprocess mode, careplan_shared.metrics): a dead worker's live gauges go
        "child_exit": mark_worker_dead,
    }
    _Gunicorn(load, settings).run()
