"""The pages of plan-service: the patient's plan, the relative's view, the coordinator's
read-only view, and "Hvem har sett planen min". Server-rendered (Jinja), no script needed.

They go through the same rules as the API: the domain's policy (api/authorization.authorize
with the session's person), the one consent projection, the same use cases, the access log.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, url_for

from careplan_shared import pages
from careplan_shared.pages.settings import DEV_PEOPLE
from plan_service.config import Config
from plan_service.pages import views

HERE = Path(__file__).parent
ROLES = ("patient", "relative", "coordinator")


def install(app: Flask, config: Config) -> None:
    pages.install(app, config.pages_settings, roles=ROLES, dev_users=DEV_PEOPLE,
                  home=lambda: url_for("pages.home"), translations=[HERE / "translations"], nav=views.nav)
    app.register_blueprint(views.bp)
