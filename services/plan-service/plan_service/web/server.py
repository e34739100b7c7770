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
        services = bootstrap(config, migrate=False)
        app = create_app(config, services)
        services.start_relay()  # in each worker; one wins the leader lock
        if services.relay is None and config.kafka_bootstrap_servers and config.persistence == "postgres":
            # The relay runs elsewhere (`plan-service relay`): wake it after each commit here.
            from plan_service.bootstrap import positions_for

            signal = positions_for(config, config.kafka_topic).commit_signal()
            services.plans.committer.on_saved.append(signal.send)
        return app

    base = f"http://{config.host}:{config.port}"
    server.serve(load, host=config.host, port=config.port, workers=config.workers, threads=config.threads,
                 ready_message=f"plan-service ready: {base}  (API docs {base}/docs, OpenAPI {base}/openapi.json, "
                               f"health {base}/healthz; store: {config.persistence})")
