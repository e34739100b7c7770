"""Serve the app with gunicorn (threaded workers feed the group-commit thread)."""

from __future__ import annotations

import sys
from typing import Any

from gunicorn.app.base import BaseApplication

from careplan_shared import logs
from plan_service.config import Config


class _Gunicorn(BaseApplication):
    def __init__(self, config: Config):
        self._config = config
        super().__init__()

    def load_config(self) -> None:
        c = self._config
        settings: dict[str, Any] = {
            "bind": f"{c.host}:{c.port}",
            "workers": c.workers,
            "worker_class": "gthread",
            "threads": c.threads,
            "timeout": 60,
            "graceful_timeout": 10,
            "keepalive": 5,
            "accesslog": None,  # the app writes its own structured request log
            "when_ready": lambda server: _announce(c),
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self):
        from plan_service.web.app import create_app

        logs.configure("plan-service", self._config.log_level)
        app = create_app(self._config)
        app.extensions["careplan"].start_relay()  # in each worker; one wins the leader lock
        return app


def _announce(c: Config) -> None:
    base = f"http://{c.host}:{c.port}"
    print(f"plan-service ready: {base}  (API docs {base}/docs, OpenAPI {base}/openapi.json, "
          f"health {base}/healthz; store: {c.persistence})", file=sys.stderr, flush=True)


def serve(config: Config) -> None:
    _Gunicorn(config).run()
