"""Helpers for tests at every layer: real processes, real infrastructure (no pytest fixtures
here; those are in conftest.py)."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def wait_for(predicate, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port for a test server, below the kernel's ephemeral range (32768-60999 here): a port
    the kernel hands out (bind to 0) can be taken by any outgoing connection (a Kafka or
    PostgreSQL client) before the server binds it. Never the same port twice in a run."""
    low, high = 20000, 32767
    try:
        first, _ = (int(x) for x in open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
        high = min(high, first - 1)
    except (OSError, ValueError):
        pass
    for _ in range(200):
        port = random.randint(low, high)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no free port in {low}-{high}")


class ServerProcess:
    """A service started as its real command (`plan-service serve`), killed at the end."""

    def __init__(self, command: list[str], env: dict[str, str], url: str, log_path: Path):
        self.command, self.env, self.url, self.log_path = command, env, url, log_path
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> ServerProcess:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=log,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.command} exited: {self.log_path.read_text()[-2000:]}")
            try:
                if requests.get(self.url + "/healthz", timeout=5).status_code == 200:
                    time.sleep(0.2)
                    if self.proc.poll() is not None:  # someone else answered on our port
                        raise RuntimeError(f"{self.command} exited: {self.log_path.read_text()[-2000:]}")
                    return self
            except (requests.ConnectionError, requests.Timeout):
                pass  # not listening yet, or a worker still booting on a busy machine: ask again
            time.sleep(0.1)
        raise RuntimeError(f"{self.command} not healthy after {timeout}s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def require_infra(what: str, variable: str) -> str:
    """The value of ``variable``; without it: a failure in CI, a skip elsewhere."""
    value = os.environ.get(variable)
    if value:
        return value
    message = f"{what} is not configured ({variable}); `make test` starts it from infra/"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 60.0,
               distinct: bool = False) -> list:
    """Every record of a topic from the beginning, until ``expected`` records (or, with
    ``distinct``, records of that many distinct event_id headers) arrived or time is up."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap.split(","), group_id=None,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=1000)
    records: list = []
    ids: set = set()
    deadline = time.monotonic() + timeout
    try:
        while (len(ids) if distinct else len(records)) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
                ids.update(dict(r.headers).get("event_id") for r in batch)
    finally:
        consumer.close()
    return records


class WebhookReceiver:
    """A real HTTP endpoint on 127.0.0.1 that answers with the statuses it is told to."""

    def __init__(self):
        self.received: list[tuple[dict, dict]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


class JwksServer:
    """A JWKS endpoint: serves ``self.jwks`` (or ``self.status`` if not 200) and counts hits."""

    def __init__(self) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        self.status = 200
        self.hits = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                with owner._lock:
                    owner.hits += 1
                    status, body = owner.status, json.dumps(owner.jwks).encode()
                if status != 200:
                    body = b'{"error":"unavailable"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/.well-known/jwks"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01},
                                        daemon=True)
        self._thread.start()
        self.running = True

    def serve(self, *jwks: dict[str, Any]) -> None:
        with self._lock:
            self.jwks = {"keys": list(jwks)}

    def stop(self) -> None:
        if self.running:
            self.running = False
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
