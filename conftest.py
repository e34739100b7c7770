"""Fixtures for every layer: real server processes on 127.0.0.1 for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

ROOT = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A service started as its real command (`plan-service serve`), killed at the end."""

    def __init__(self, command: list[str], env: dict[str, str], url: str, log_path: Path):
        self.command, self.env, self.url, self.log_path = command, env, url, log_path
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "ServerProcess":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=log,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.command} exited: {self.log_path.read_text()[-2000:]}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
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


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "var"
    path.mkdir()
    return path


@pytest.fixture
def start_plan_service(data_dir: Path, tmp_path: Path) -> Iterator:
    """start_plan_service(**env) -> a running plan-service on a free port (SQLite by default)."""
    started: list[ServerProcess] = []

    def start(port: int | None = None, **extra_env: str) -> ServerProcess:
        port = port or free_port()
        env = {**os.environ, "CAREPLAN_DATA_DIR": str(data_dir), "PLAN_SERVICE_PORT": str(port),
               "PLAN_SERVICE_HOST": "127.0.0.1", **extra_env}
        server = ServerProcess([str(BIN / "plan-service"), "serve"], env,
                               f"http://127.0.0.1:{port}", tmp_path / f"plan-service-{port}.log")
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
