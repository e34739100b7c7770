"""Logging in and out of the pages: OpenID Connect (authorization code + PKCE, through
Authlib) with ID-porten and HelseID, and, on the embedded default only, a development login
that lists synthetic people."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from authlib.integrations.flask_client import OAuth
from flask import Blueprint, abort, current_app, make_response, redirect, render_template, request, session, url_for
from flask_babel import gettext as _

from careplan_shared.auth import InvalidToken, principal_from_claims
from careplan_shared.pages.core import csrf, current_principal, error_page, safe_next, sign_in, sign_out
from careplan_shared.pages.i18n import LANGUAGE_COOKIE, LANGUAGES
from careplan_shared.pages.settings import DevUser, OidcLogin, PagesSettings

log = logging.getLogger("careplan.login")
bp = Blueprint("login", __name__)


def _state() -> dict[str, Any]:
    return current_app.extensions["careplan_pages"]


def _settings() -> PagesSettings:
    return _state()["settings"]


def _login(name: str) -> OidcLogin:
    for login in _settings().logins:
        if login.name == name:
            return login
    abort(404)


def _next() -> str:
    return safe_next(session.pop("next", None), default=_state()["home"]())


@bp.get("/login")
def page():
    if current_principal() is not None:
        return redirect(_state()["home"]())
    settings = _settings()
    served = _state()["roles"]
    # one button per issuer, or per role a person chooses there, for the roles these pages serve
    buttons = [(login, role) for login in settings.logins
               for role in ([r for r in login.roles if r in served] if login.roles else [None])]
    return render_template("careplan/login.html", logins=buttons,
                           dev_users=_state()["dev_users"] if settings.dev_login else None,
                           dev_roles=_state()["roles"] if settings.dev_login else ())


@bp.post("/login/dev")
def dev():
    csrf.protect()
    if not _settings().dev_login:
        abort(404)
    subject, role = (request.form.get("subject") or "").strip(), request.form.get("role") or ""
    if role not in _state()["roles"]:
        return error_page(422, _("Choose one of the roles listed."))
    try:
        principal = principal_from_claims({"sub": subject, "role": role})
    except InvalidToken:
        return error_page(422, _("An id is one line of text, 1 to 128 characters."))
    sign_in(principal.subject, principal.role, "dev")
    log.info("signed in", extra={"via": "dev", "role": role})
    return redirect(_next())


@bp.get("/login/<name>")
def start(name: str):
    login = _login(name)
    role = request.args.get("role")
    if login.roles and role not in login.roles:
        abort(404)
    session["login_role"] = role if login.roles else None
    client = _state()["oauth"].create_client(login.name)
    return client.authorize_redirect(url_for("login.callback", name=login.name, _external=True))


@bp.get("/login/<name>/callback")
def callback(name: str):
    login = _login(name)
    # RFC 9207: the issuer says who answers; a response from another issuer is refused (the
    # Flask client does not check it). Each issuer also has its own callback address.
    if "iss" in request.args and request.args["iss"] != login.issuer:
        log.warning("login answer from another issuer refused", extra={"via": login.name})
        return error_page(400, _("The login could not be completed. Please try again."))
    client = _state()["oauth"].create_client(login.name)
    try:
        token = client.authorize_access_token()
        claims = dict(token.get("userinfo") or {})
        if not claims:
            raise ValueError("no id_token")
    except Exception as e:  # noqa: BLE001 - a refused or broken login is the person's answer, not a 500
        log.warning("login failed", extra={"via": login.name, "error_type": type(e).__name__})
        return error_page(400, _("The login could not be completed. Please try again."))
    role = session.pop("login_role", None) or login.static_role or claims.get(login.role_claim)
    try:
        principal = principal_from_claims({"sub": claims.get(login.subject_claim), "role": role})
    except InvalidToken:
        return error_page(403, _("Your login does not give access to these pages."))
    if principal.role not in _state()["roles"]:
        return error_page(403, _("These pages are not for your role."))
    going = _next()
    sign_in(principal.subject, principal.role, login.name)
    session["id_token"] = token.get("id_token")
    log.info("signed in", extra={"via": login.name, "role": principal.role})
    return redirect(going)


@bp.post("/logout")
def logout():
    csrf.protect()
    via, id_token = (session.get("user") or {}).get("via"), session.get("id_token")
    sign_out()
    login = next((x for x in _settings().logins if x.name == via), None)
    if login is not None:
        client = _state()["oauth"].create_client(login.name)
        try:
            end = client.load_server_metadata().get("end_session_endpoint")
        except Exception:  # noqa: BLE001 - signed out here in any case
            end = None
        if end:
            return client.logout_redirect(post_logout_redirect_uri=url_for("login.page", _external=True),
                                          id_token_hint=id_token)
    return redirect(url_for("login.page"))


@bp.post("/language")
def language():
    csrf.protect()
    lang = request.form.get("lang", "")
    response = make_response(redirect(safe_next(request.form.get("next"))))
    if lang in LANGUAGES:
        response.set_cookie(LANGUAGE_COOKIE, lang, max_age=365 * 24 * 3600, httponly=True, samesite="Lax",
                            secure=request.is_secure or _settings().secure_cookies)
    return response


def register_clients(oauth: OAuth, logins: tuple[OidcLogin, ...]) -> None:
    for login in logins:
        kwargs: dict[str, Any] = {"scope": login.scope, "code_challenge_method": "S256"}
        if login.client_secret is None:
            kwargs["token_endpoint_auth_method"] = "none"
        oauth.register(login.name, client_id=login.client_id, client_secret=login.client_secret,
                       server_metadata_url=login.discovery_url, client_kwargs=kwargs)


def origins(logins: tuple[OidcLogin, ...]) -> list[str]:
    """Where a signed-out person is sent (the issuers' logout pages)."""
    result = []
    for login in logins:
        parts = urlsplit(login.issuer)
        result.append(f"{parts.scheme}://{parts.netloc}")
    return result


__all__ = ["DevUser", "bp", "origins", "register_clients"]
