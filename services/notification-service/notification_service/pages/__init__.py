"""The pages of notification-service: the coordinator's inbox of prompts and each prompt's
page. Server-rendered (Jinja), no script needed; bokmål by default, English by the switch.

They go through the same use cases and rules as the API (api/prompts.py): a coordinator sees
and acknowledges only their own prompts; another coordinator's prompt does not exist for them.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, url_for

from careplan_shared import pages
from careplan_shared.pages.settings import DEV_PEOPLE
from notification_service.config import Config
from notification_service.pages import views

HERE = Path(__file__).parent
ROLES = ("coordinator",)


def install(app: Flask, config: Config) -> None:
    pages.install(app, config.pages_settings, roles=ROLES, dev_users=DEV_PEOPLE,
                  home=lambda: url_for("inbox.index"), translations=[HERE / "translations"], nav=views.nav)
    app.register_blueprint(views.bp)
