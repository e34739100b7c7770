"""Server-rendered pages both services share: sessions, login, CSRF, language, layout.

``install(app, settings, ...)`` once in ``create_app``; then each service registers its own
page blueprints made with :func:`blueprint`. See settings.py for the variables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from pathlib import Path

from authlib.integrations.flask_client import OAuth
from cachelib.file import FileSystemCache
from flask import Blueprint, Flask, request
from flask_session import Session

from careplan_shared.files import load_or_create_secret, private_dir
from careplan_shared.pages import i18n, login
from careplan_shared.pages.core import (
    blueprint,
    csrf,
    current_principal,
    error_page,
    install_headers,
    safe_next,
    sign_in,
)
from careplan_shared.pages.settings import DevUser, PagesSettings

HERE = Path(__file__).parent
SESSION_COOKIE = "careplan_session"

__all__ = ["DevUser", "PagesSettings", "blueprint", "current_principal", "error_page", "install", "safe_next",
           "sign_in"]


def install(app: Flask, settings: PagesSettings, *, roles: Sequence[str], dev_users: Sequence[DevUser],
            home: Callable[[], str], translations: Iterable[Path] = (), nav: Callable[[], list] | None = None) -> None:
    """Sessions, CSRF, language, login and the shared layout for ``app``.

    ``roles``: who these pages are for (the development login offers these); ``home``: where
    a person goes after login (a URL); ``translations``: the service's catalogue folders;
    ``nav``: (label, url) links of the service's menu for the signed-in person."""
    import secrets

    app.secret_key = load_or_create_secret(settings.secret_key_file, lambda: secrets.token_hex(32))
    private_dir(settings.session_dir)
    app.config.update(
        SESSION_TYPE="cachelib",
        SESSION_CACHELIB=FileSystemCache(str(settings.session_dir), threshold=10_000,
                                         default_timeout=settings.session_minutes * 60, mode=0o600),
        SESSION_PERMANENT=True,
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=settings.session_minutes),
        SESSION_COOKIE_NAME=SESSION_COOKIE,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        WTF_CSRF_CHECK_DEFAULT=False,  # the API is bearer-token only; pages check every form
        WTF_CSRF_TIME_LIMIT=None,  # a token lasts as long as its session
    )
    Session(app)
    _secure_over_https(app)
    csrf.init_app(app)
    i18n.install(app, [HERE / "translations", *translations])
    oauth = OAuth(app)
    login.register_clients(oauth, settings.logins)
    app.extensions["careplan_pages"] = {
        "settings": settings, "oauth": oauth, "roles": tuple(roles), "dev_users": tuple(dev_users),
        "home": home, "nav": nav or (lambda: []),
    }
    app.register_blueprint(Blueprint("careplan_assets", __name__, template_folder="templates",
                                     static_folder="static", static_url_path="/assets/careplan"))
    app.register_blueprint(login.bp)
    install_headers(app, login.origins(settings.logins))

    @app.context_processor
    def _layout():
        from careplan_shared.pages.i18n import LANGUAGES, selected_language

        return {"principal": current_principal(), "languages": LANGUAGES, "language": selected_language(),
                "service_nav": app.extensions["careplan_pages"]["nav"](), "here": request.full_path.rstrip("?"),
                "development": settings.dev_login}


def _secure_over_https(app: Flask) -> None:
    """Secure cookies whenever the request came over https (and always if configured)."""
    interface = app.session_interface
    configured = interface.get_cookie_secure

    def secure(app_: Flask) -> bool:
        return configured(app_) or request.is_secure

    interface.get_cookie_secure = secure  # type: ignore[method-assign,assignment]
