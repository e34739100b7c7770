"""Serve plan-service with gunicorn (threaded workers feed the group-commit thread)."""

from __future__ import annotations

from careplan_shared import logs, server
from plan_service.config import Config


def serve(config: Config) -> None:
    from plan_service.web.cli import migrate

    # The schema, once, here in the gunicorn master before the workers fork (they never create
    # a table); several instances starting at once queue on the migration lock.
    if migrate(config, quiet=True):
        raise SystemExit(1)

    def load():
        from plan_service.bootstrap import bootstrap
        from plan_service.web.app import create_app

        logs.configure("plan-service", config.log_level)
        app = create_app(config, bootstrap(config, migrate=False))
        app.extensions["careplan"].start_relay()  # in each worker; one wins the leader lock
        return app

    base = f"http://{config.host}:{config.port}"
    server.serve(load, host=config.host, port=config.port, workers=config.workers, threads=config.threads,
                 ready_message=f"plan-service ready: {base}  (API docs {base}/docs, OpenAPI {base}/openapi.json, "
                               f"health {base}/healthz; store: {config.persistence})")
