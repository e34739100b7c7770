"""Serve a Flask app with gunicorn (threaded workers); the same for both services."""

from __future__ import annotations

import sys
from typing import Any, Callable

from gunicorn.app.base import BaseApplication


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
        "worker_class": "gthread",
        "threads": threads,
        "timeout": 60,
        "graceful_timeout": 10,
        "keepalive": 5,
        "accesslog": None,  # the apps write their own structured request log
        "when_ready": lambda server: print(ready_message, file=sys.stderr, flush=True),
    }
    _Gunicorn(load, settings).run()
