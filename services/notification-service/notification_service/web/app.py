"""create_app(): the Flask application of notification-service. Nothing happens at import time."""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from careplan_shared import logs, metrics, openapi, problem, web
from careplan_shared.authentication import install_auth_failure_limit
from notification_service import pages
from notification_service.api import health, prompts
from notification_service.bootstrap import Services, bootstrap
from notification_service.config import Config
from notification_service.web import metrics as service_metrics


def create_app(config: Config | None = None, services: Services | None = None) -> Flask:
    config = config or Config.from_env()
    services = services or bootstrap(config)
    app = Flask("notification_service")
    app.config.update(API_TITLE="notification-service", API_VERSION="1.0.0", MAX_CONTENT_LENGTH=64 * 1024,
                      PROPAGATE_EXCEPTIONS=False, **web.swagger_ui_config())
    app.config["API_SPEC_OPTIONS"] = {
        "info": {"description": "The coordinator's inbox of prompts. Errors are application/problem+json."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
    }
    app.extensions["careplan"] = services
    web.install(app)
    metrics.install(app)  # /metrics and request counts, if CAREPLAN_METRICS_TOKEN is set
    install_auth_failure_limit(app)  # CAREPLAN_AUTH_FAILURE_*: read now, fail at start-up
    logs.install_request_logging(app)
    api = Api(app)
    openapi.document_problems(api)  # errors as they are: problem+json, every 4xx per operation
    problem.install(app)
    api.register_blueprint(prompts.blp)
    app.register_blueprint(health.blp)
    web.install_swagger_assets(app)
    pages.install(app, config)  # after web.install: the pages' own security headers win
    service_metrics.install(app, config, services)  # the store-read metrics
    return app
