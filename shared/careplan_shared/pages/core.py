"""What every page of both services shares: the signed-in person from the server-side
session, CSRF on every form, the pages' security headers, HTML error pages, and the layout.

A service makes its page blueprints with :func:`blueprint`: each view then has a person
(``current_principal()``, or a redirect to the login page), every POST carries a valid CSRF
token (else 400), and errors are pages, not problem+json. The API keeps its bearer tokens:
a session cookie never authenticates an API call.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from flask import Blueprint, Flask, current_app, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException, InternalServerError

from careplan_shared.auth import Principal
from careplan_shared.logs import log_unhandled

log = logging.getLogger("careplan.pages")

# No script but our own files, no inline script or style, nothing from another host; forms
# post here (and to the login issuers, added per app).
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "font-src 'self'; connect-src 'self'; form-action 'self'{form_action}; frame-ancestors 'none'; "
            "base-uri 'none'")
USER_KEY = "user"
csrf = CSRFProtect()


def current_principal() -> Principal | None:
    """The person signed in to this browser session (None: nobody)."""
    user = session.get(USER_KEY)
    if not isinstance(user, dict):
        return None
    return Principal(user["sub"], user["role"])


def sign_in(subject: str, role: str, via: str) -> None:
    """A new session (new id: no fixation) for this person."""
    kept = {k: v for k, v in session.items() if k == "next"}
    session["_"] = True  # Flask-Session regenerates only a non-empty session
    current_app.session_interface.regenerate(session)  # type: ignore[attr-defined]
    session.clear()
    session.update(kept)
    session[USER_KEY] = {"sub": subject, "role": role, "via": via}
    session.permanent = True


def sign_out() -> None:
    session.clear()


def safe_next(value: str | None, default: str = "/") -> str:
    """A local path to go on to after login (never another host)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value or "\n" in value:
        return default
    return value


def blueprint(name: str, import_name: str, *, roles: Iterable[str], **kwargs: Any) -> Blueprint:
    """A blueprint of pages for people in ``roles``: signed in, CSRF-checked, HTML errors."""
    allowed = frozenset(roles)
    bp = Blueprint(name, import_name, **kwargs)
    PAGE_BLUEPRINTS.add(name)

    @bp.before_request
    def _signed_in():
        principal = current_principal()
        if principal is None:
            if request.method == "GET":
                session["next"] = safe_next(request.full_path.rstrip("?"))
            return redirect(url_for("login.page"))
        if principal.role not in allowed:
            return error_page(403, _("These pages are not for your role."))
        g.principal = principal
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            csrf.protect()
        return None

    bp.register_error_handler(HTTPException, _http_error)
    bp.register_error_handler(Exception, _unexpected)
    return bp


PAGE_BLUEPRINTS: set[str] = {"login"}

_MESSAGES = {
    400: "The form could not be used. Please go back and try again.",
    403: "You do not have access to this.",
    404: "We could not find this page.",
    405: "This page cannot be used that way.",
    413: "That was too much text.",
    422: "Some of what you filled in could not be used.",
    503: "This is not available just now. Please try again in a moment.",
}


def error_page(status: int, message: str | None = None) -> Any:
    text = message or _(_MESSAGES.get(status, "Something went wrong. Please try again later."))
    return render_template("careplan/error.html", status=status, message=text), status


def _http_error(error: HTTPException) -> Any:
    if isinstance(error, CSRFError):
        return error_page(400, _("The form had expired or did not come from this page. Please try again."))
    return error_page(error.code or 500)


def _unexpected(error: Exception) -> Any:
    if isinstance(error, HTTPException):
        return _http_error(error)
    log_unhandled(error)
    return error_page(InternalServerError.code)


def install_headers(app: Flask, form_targets: Iterable[str] = ()) -> None:
    """The pages' Content-Security-Policy and referrer policy (the API keeps its own)."""
    extra = "".join(f" {t}" for t in sorted(set(form_targets)))
    policy = PAGE_CSP.format(form_action=extra)

    @app.after_request
    def _page_headers(response):
        if request.blueprint in PAGE_BLUEPRINTS or request.endpoint == "careplan_assets.static":
            response.headers["Content-Security-Policy"] = policy
            # same-origin: the CSRF check on https compares the Referer with the host
            response.headers["Referrer-Policy"] = "same-origin"
        return response
