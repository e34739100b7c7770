"""create_app(): the Flask application of plan-service. Nothing happens at import time."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from careplan_shared import logs, metrics, openapi, problem, web
from careplan_shared.authentication import install_auth_failure_limit
from plan_service import pages
from plan_service.api import authorization, errors, feed, fhir, health, plans
from plan_service.bootstrap import Services, bootstrap
from plan_service.config import Config
from plan_service.web import metrics as service_metrics


def create_app(config: Config | None = None, services: Services | None = None) -> Flask:
    config = config or Config.from_env()
    services = services or bootstrap(config)

    app = Flask("plan_service")
    app.config.update(
        API_TITLE="plan-service",
        API_VERSION="1.0.0",
        MAX_CONTENT_LENGTH=config.max_body_bytes,
        PROPAGATE_EXCEPTIONS=False,
        **web.swagger_ui_config(),
    )
    app.config["API_SPEC_OPTIONS"] = {
        "info": {"description": "Individual plans (individuell plan): EPR integration API. "
                                "Errors are application/problem+json (RFC 9457)."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "bearerFormat": "JWT"}}},
    }
    app.extensions["careplan"] = services

    web.install(app)
    metrics.install(app)  # /metrics and request counts, if CAREPLAN_METRICS_TOKEN is set
    install_auth_failure_limit(app)  # CAREPLAN_AUTH_FAILURE_*: read now, fail at start-up
    logs.install_request_logging(app)
    api = Api(app)
    openapi.document_problems(api)  # errors as they are: problem+json, every 4xx per operation
    problem.install(app)  # after Api: replaces its JSON error handler with problem+json
    errors.install(app)
    app.after_request(authorization.log_access)
    plans.register_event_schemas(api.spec)
    api.register_blueprint(plans.blp)
    api.register_blueprint(feed.blp)
    api.register_blueprint(fhir.blp)
    app.register_blueprint(health.blp)
    web.install_swagger_assets(app)
    pages.install(app, config)  # after web.install: the pages' own security headers win
    service_metrics.install(app, config, services)  # the store-read metrics
    return app
