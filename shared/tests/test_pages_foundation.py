"""The pages' shared foundation on a minimal app: sessions, login, CSRF, language, headers.

No service is involved: a one-page blueprint made with ``pages.blueprint`` stands in for one.
The OIDC login itself runs against a real OpenID Provider in tests/browser.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask, render_template_string

from careplan_shared import pages, web
from careplan_shared.config import ConfigError
from careplan_shared.pages.settings import DEV_PEOPLE, PagesSettings


def make_app(tmp_path: Path, env: dict[str, str] | None = None) -> Flask:
    app = Flask("pages_test")
    web.install(app)
    settings = PagesSettings.from_env(env or {}, service="test-service", data_dir=tmp_path)
    bp = pages.blueprint("demo", __name__, roles=("patient",))

    @bp.get("/")
    def home():
        return render_template_string('{% extends "careplan/base.html" %}{% block main %}'
                                      '<h1>hello {{ g.principal.subject }}</h1>{% endblock %}')

    @bp.post("/change")
    def change():
        return "changed"

    @app.get("/v1/thing")
    def api():
        return {"principal": pages.current_principal() is not None}

    pages.install(app, settings, roles=("patient", "relative"), dev_users=DEV_PEOPLE, home=lambda: "/")
    app.register_blueprint(bp)
    return app


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def login(client, subject: str = "pat-a1", role: str = "patient"):
    token = csrf_token(client.get("/login").get_data(as_text=True))
    return client.post("/login/dev", data={"csrf_token": token, "subject": subject, "role": role})


@pytest.fixture
def client(tmp_path):
    return make_app(tmp_path).test_client()


def test_a_page_sends_the_stranger_to_the_login_and_back_afterwards(client):
    response = client.get("/?x=1")
    assert response.status_code == 302 and response.headers["Location"].endswith("/login")
    response = login(client)
    assert response.status_code == 302 and response.headers["Location"] == "/?x=1"
    assert "<h1>hello pat-a1</h1>" in client.get("/").get_data(as_text=True)


def test_the_session_cookie_is_httponly_samesite_and_secure_over_https(tmp_path):
    client = make_app(tmp_path).test_client()
    cookie = login(client).headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    secure = make_app(tmp_path).test_client()
    token = csrf_token(secure.get("/login", base_url="https://pages.example").get_data(as_text=True))
    cookie = secure.post("/login/dev", data={"csrf_token": token, "subject": "pat-a1", "role": "patient"},
                         base_url="https://pages.example",
                         headers={"Referer": "https://pages.example/login"}).headers["Set-Cookie"]
    assert "Secure" in cookie


def test_the_session_id_changes_at_login_and_the_old_one_is_worthless(client):
    client.get("/login")
    before = client.get_cookie("careplan_session").value
    login(client)
    after = client.get_cookie("careplan_session").value
    assert before != after
    client.set_cookie("careplan_session", before)
    assert client.get("/").status_code == 302


def test_the_session_lives_on_the_server_and_the_cookie_holds_only_its_id(client, tmp_path):
    login(client)
    value = client.get_cookie("careplan_session").value
    assert "pat-a1" not in value and len(value) < 64
    files = list((tmp_path / "test-service" / "sessions").iterdir())
    assert files and all(f.stat().st_mode & 0o077 == 0 for f in files)


def test_every_form_needs_the_csrf_token(client):
    login(client)
    assert client.post("/change").status_code == 400
    assert client.post("/change", data={"csrf_token": "forged"}).status_code == 400
    page = client.get("/").get_data(as_text=True)
    assert client.post("/change", data={"csrf_token": csrf_token(page)}).get_data(as_text=True) == "changed"


def test_a_token_from_another_session_does_not_pass(tmp_path):
    app = make_app(tmp_path)
    mallory, alice = app.test_client(), app.test_client()
    login(mallory, "pat-m9")
    foreign = csrf_token(mallory.get("/login", follow_redirects=True).get_data(as_text=True))
    login(alice)
    assert alice.post("/change", data={"csrf_token": foreign}).status_code == 400


def test_logout_ends_the_session(client):
    login(client)
    token = csrf_token(client.get("/").get_data(as_text=True))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/").status_code == 302


def test_the_dev_login_offers_only_the_pages_roles_and_checks_ids(client):
    html = client.get("/login").get_data(as_text=True)
    assert "Ada Testesen" in html and "Kari Koordinator" not in html  # coordinators are not served here
    token = csrf_token(html)
    assert client.post("/login/dev", data={"csrf_token": token, "subject": "k1", "role": "coordinator"}).status_code == 422
    assert client.post("/login/dev", data={"csrf_token": token, "subject": "a\nb", "role": "patient"}).status_code == 422
    assert client.post("/login/dev", data={"subject": "pat-a1", "role": "patient"}).status_code == 400


def test_a_role_the_pages_do_not_serve_gets_a_page_saying_so(client):
    login(client, "rel-b1", "relative")
    response = client.get("/")
    assert response.status_code == 403 and "text/html" in response.content_type


def test_no_dev_login_once_dev_tokens_are_refused(tmp_path):
    env = {"OIDC_ISSUERS": "idporten", "OIDC_IDPORTEN_ISSUER": "http://127.0.0.1:1/op",
           "OIDC_IDPORTEN_AUDIENCE": "careplan", "OIDC_IDPORTEN_JWKS_URL": "http://127.0.0.1:1/op/jwks",
           "OIDC_IDPORTEN_CLIENT_ID": "careplan-web", "OIDC_IDPORTEN_LOGIN_ROLES": "patient,relative",
           "OIDC_IDPORTEN_LABEL": "ID-porten"}
    client = make_app(tmp_path, env).test_client()
    html = client.get("/login").get_data(as_text=True)
    assert "Ada Testesen" not in html and "/login/idporten?role=patient" in html and "/login/idporten?role=relative" in html
    assert client.post("/login/dev", data={"subject": "pat-a1", "role": "patient"}).status_code in (400, 404)
    assert "http://127.0.0.1:1" in client.get("/login").headers["Content-Security-Policy"]  # logout goes there


def test_the_login_page_offers_only_the_roles_these_pages_serve(tmp_path):
    env = {"OIDC_ISSUERS": "idporten,helseid", "OIDC_IDPORTEN_ISSUER": "http://127.0.0.1:1/op",
           "OIDC_IDPORTEN_CLIENT_ID": "web", "OIDC_IDPORTEN_LOGIN_ROLES": "patient,coordinator",
           "OIDC_HELSEID_ISSUER": "http://127.0.0.1:2/op", "OIDC_HELSEID_CLIENT_ID": "web"}
    html = make_app(tmp_path, env).test_client().get("/login").get_data(as_text=True)
    assert "/login/idporten?role=patient" in html and "role=coordinator" not in html  # the app serves patient, relative
    assert 'href="/login/helseid"' in html  # the role comes from the issuer


def test_roles_chosen_at_login_are_only_those_bound_to_the_persons_identity(tmp_path):
    env = {"OIDC_ISSUERS": "helseid", "OIDC_HELSEID_ISSUER": "http://127.0.0.1:1/op",
           "OIDC_HELSEID_CLIENT_ID": "careplan-web", "OIDC_HELSEID_LOGIN_ROLES": "coordinator,clinician"}
    with pytest.raises(ConfigError, match="LOGIN_ROLES.*clinician"):
        PagesSettings.from_env(env, service="s", data_dir=tmp_path)


def test_a_login_answer_from_another_issuer_is_refused(tmp_path):
    env = {"OIDC_ISSUERS": "idporten", "OIDC_IDPORTEN_ISSUER": "http://127.0.0.1:1/op",
           "OIDC_IDPORTEN_CLIENT_ID": "careplan-web", "OIDC_IDPORTEN_LOGIN_ROLES": "patient"}
    client = make_app(tmp_path, env).test_client()
    response = client.get("/login/idporten/callback?code=x&state=y&iss=http://127.0.0.1:2/evil")
    assert response.status_code == 400 and "text/html" in response.content_type
    assert client.get("/login/idporten/callback?code=x&state=never-issued").status_code == 400


def test_bokmal_by_default_english_by_a_remembered_switch(client):
    html = client.get("/login").get_data(as_text=True)
    assert '<html lang="nb">' in html and "Logg inn" in html
    response = client.post("/language", data={"csrf_token": csrf_token(html), "lang": "en", "next": "/login"})
    assert response.headers["Location"] == "/login"
    assert "Max-Age=31536000" in response.headers["Set-Cookie"]
    html = client.get("/login").get_data(as_text=True)
    assert '<html lang="en">' in html and "Log in" in html


def test_after_the_switch_only_local_paths_are_followed(client):
    token = csrf_token(client.get("/login").get_data(as_text=True))
    for bad in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        assert client.post("/language", data={"csrf_token": token, "lang": "en", "next": bad}).headers["Location"] == "/"


def test_pages_get_a_csp_without_inline_script_and_the_api_keeps_its_own(client):
    page_csp = client.get("/login").headers["Content-Security-Policy"]
    assert "script-src 'self';" in page_csp and "unsafe-inline" not in page_csp and "frame-ancestors 'none'" in page_csp
    assert client.get("/assets/careplan/careplan.css").headers["Content-Security-Policy"] == page_csp
    assert client.get("/v1/thing").headers["Content-Security-Policy"] == web.API_CSP


def test_a_session_cookie_never_authenticates_the_api(client):
    login(client)
    assert client.get("/v1/thing").get_json() == {"principal": True}  # the session is there ...
    # ... but the services' API views authenticate bearer tokens only (careplan_shared.authentication)
    import inspect

    from careplan_shared import authentication
    assert "session" not in inspect.getsource(authentication)


def test_every_shared_message_has_a_bokmal_translation():
    from babel.messages.pofile import read_po

    here = Path(pages.__file__).parent
    catalog = read_po((here / "translations/nb/LC_MESSAGES/messages.po").open("rb"))
    translated = {m.id for m in catalog if m.id and m.string}
    used = set()
    for path in [*here.glob("templates/**/*.html"), *here.glob("*.py")]:
        used |= set(re.findall(r'\b_\("((?:[^"\\]|\\.)+)"', path.read_text()))
    used |= {"patient", "relative", "coordinator", "clinician", "integration"}
    assert used - translated == set()
