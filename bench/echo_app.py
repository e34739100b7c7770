"""The bare Flask JSON echo of `make bench`: the framework's own cost per request, as a
baseline for POST /v1/plans/{id}/events.

It is served exactly as plan-service is (careplan_shared.server.serve: gunicorn, the same gthread
worker class, the same worker and thread counts, read from the same PLAN_SERVICE_WORKERS /
PLAN_SERVICE_THREADS through plan-service's Config), and it does what any JSON endpoint must:
parse the body as JSON and serialise a JSON answer. Nothing else: no auth, no validation, no store.

Usage: .venv/bin/python bench/echo_app.py  (listens on 127.0.0.1:$BENCH_ECHO_PORT, default 8089)
"""

from __future__ import annotations

import os

from flask import Flask, jsonify, request

from careplan_shared import server
from plan_service.config import Config


def create_app() -> Flask:
    app = Flask("echo")

    @app.post("/echo")
    def echo():
        return jsonify(request.get_json()), 201

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    return app


def main() -> None:
    config = Config.from_env()  # the same workers and threads as `plan-service serve` would use
    port = int(os.environ.get("BENCH_ECHO_PORT", "8089"))
    server.serve(create_app, host="127.0.0.1", port=port, workers=config.workers, threads=config.threads,
                 ready_message=f"echo ready: http://127.0.0.1:{port}/echo "
                               f"({config.workers} worker(s) x {config.threads} threads)")


if __name__ == "__main__":
    main()
