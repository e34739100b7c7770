"""Smoke tests of the browser-test infrastructure (tests/browser/conftest.py): Debian's
Chromium under Playwright, axe-core, screenshots, the foreign-host block, and real OpenID
Connect logins against the local providers of infra/oidc (idporten, helseid)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet

pytestmark = pytest.mark.e2e

PAGES = {
    "/clean": """<!doctype html>
<html lang="nb"><head><meta charset="utf-8"><title>Ren side</title></head>
<body><main><h1>Omsorgsplan</h1><p>Alt i orden.</p>
<img src="/pixel.svg" alt="Et blått kvadrat" width="20" height="20"></main></body></html>""",
    "/img-without-alt": """<!doctype html>
<html lang="nb"><head><meta charset="utf-8"><title>Bilde uten alt</title></head>
<body><main><h1>Omsorgsplan</h1><img src="/pixel.svg" width="20" height="20"></main></body></html>""",
    "/foreign-font": """<!doctype html>
<html lang="nb"><head><meta charset="utf-8"><title>Skrift</title>
<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto:400,100"></head>
<body><main><h1>Skrift utenfra</h1></main></body></html>""",
}
PIXEL = b'<svg xmlns="http://www.w3.org/2000/svg" width="20" height="20"><rect width="20" height="20" fill="#1a4fa0"/></svg>'
# The same page as /img-without-alt, behind a CSP that refuses inline scripts (axe's script tag).
STRICT_CSP = "default-src 'self'; script-src 'self'"


class LocalSite:
    """A tiny http.server on 127.0.0.1: the pages above, and /callback, which records the query
    of every redirect it receives (an OAuth redirect URI)."""

    def __init__(self) -> None:
        self.callbacks: list[dict[str, str]] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                parts = urlsplit(self.path)
                headers = {"Content-Type": "text/html; charset=utf-8"}
                if parts.path == "/callback":
                    site.callbacks.append({k: v[0] for k, v in parse_qs(parts.query).items()})
                    status, body = 200, b"<!doctype html><html lang='nb'><title>OK</title><p>Innlogget</p></html>"
                elif parts.path == "/pixel.svg":
                    status, body, headers = 200, PIXEL, {"Content-Type": "image/svg+xml"}
                elif parts.path == "/strict-csp":
                    status, body = 200, PAGES["/img-without-alt"].encode()
                    headers["Content-Security-Policy"] = STRICT_CSP
                elif parts.path in PAGES:
                    status, body = 200, PAGES[parts.path].encode()
                else:
                    status, body = 404, b"not found"
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def site() -> Iterator[LocalSite]:
    site = LocalSite()
    yield site
    site.close()


def verified(token: str, jwks: dict[str, Any]) -> jwt.Token:
    """The JWT, its RS256 signature checked against the provider's JWKS."""
    return jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["RS256"])


# -- browser, axe, screenshots, network block ------------------------------------------------

def test_axe_finds_nothing_serious_on_a_clean_page_and_screenshot_is_written(page, site, axe, screenshot):
    page.goto(site.url + "/clean")
    assert page.evaluate("() => navigator.language") == "nb-NO"
    assert page.evaluate("() => Intl.DateTimeFormat().resolvedOptions().timeZone") == "Europe/Oslo"
    found = axe(page)
    assert not found, str(found)
    path = screenshot(page, "smoke/clean page")
    assert path.name == "smoke_clean_page.png"
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize("path", ["/img-without-alt", "/strict-csp"])
def test_axe_reports_an_image_without_alt(page, site, axe, path):
    page.goto(site.url + path)
    found = axe(page)
    assert found.ids() == ["image-alt"], str(found)
    assert found[0]["impact"] == "critical"
    assert found[0]["nodes"] == ["img"]
    assert "image-alt (critical)" in str(found)


def test_requests_to_other_hosts_are_blocked(page, site, blocked_requests):
    from playwright.sync_api import Error

    page.goto(site.url + "/foreign-font")  # loads at once, without its font
    assert page.locator("h1").inner_text() == "Skrift utenfra"
    with pytest.raises(Error, match="ERR_BLOCKED_BY_CLIENT"):
        page.goto("http://example.com/")
    assert "http://example.com/" in blocked_requests
    assert any(url.startswith("https://fonts.googleapis.com/") for url in blocked_requests)
    assert not any(urlsplit(url).hostname == "127.0.0.1" for url in blocked_requests)


# -- OpenID Providers ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["idporten", "helseid"])
def test_discovery_and_jwks_are_served(oidc_providers, name):
    op = oidc_providers[name]
    metadata = op.metadata()
    assert metadata["issuer"] == op.issuer
    assert "S256" in metadata["code_challenge_methods_supported"]
    assert {"authorization_code", "client_credentials"} <= set(metadata["grant_types_supported"])
    keys = op.jwks()["keys"]
    assert keys and all(k["kty"] == "RSA" and k["kid"] for k in keys)
    assert not any("d" in k for k in keys), "private key material in the JWKS"


def client_credentials(oidc_providers, name: str, **extra: str) -> str:
    op = oidc_providers[name]
    response = requests.post(
        op.metadata()["token_endpoint"], data={"grant_type": "client_credentials", **extra},
        auth=(oidc_providers.system_client_id, oidc_providers.system_client_secret), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def test_client_credentials_token_from_helseid_is_an_rfc9068_jwt(oidc_providers):
    op = oidc_providers.helseid
    token = verified(client_credentials(oidc_providers, "helseid", resource=oidc_providers.resource), op.jwks())
    assert token.header["typ"] == "at+jwt"
    assert token.claims["aud"] == "careplan" == oidc_providers.audience
    assert token.claims["iss"] == op.issuer
    assert token.claims["role"] == "integration"
    assert token.claims["client_id"] == token.claims["sub"] == oidc_providers.system_client_id
    # Without `resource` the default resource applies: the same kind of token.
    default = verified(client_credentials(oidc_providers, "helseid"), op.jwks())
    assert (default.header["typ"], default.claims["aud"], default.claims["role"]) == ("at+jwt", "careplan", "integration")
    # idporten knows the system client too, but gives it no role.
    citizen_side = verified(client_credentials(oidc_providers, "idporten"), oidc_providers.idporten.jwks())
    assert citizen_side.claims["aud"] == "careplan" and "role" not in citizen_side.claims


def browser_login(page, op, client_id: str, site: LocalSite, login: str,
                  client_secret: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Authorization code + PKCE (S256) through the real browser and the dev login form; the
    code exchanged by Authlib. Returns the verified (id_token claims, access token)."""
    from authlib.common.security import generate_token
    from authlib.integrations.requests_client import OAuth2Session

    metadata = op.metadata()
    redirect_uri = site.url + "/callback"
    session = OAuth2Session(client_id, client_secret, scope="openid profile", redirect_uri=redirect_uri,
                            code_challenge_method="S256",
                            token_endpoint_auth_method="client_secret_basic" if client_secret else "none")
    verifier, nonce = generate_token(64), generate_token(20)
    url, state = session.create_authorization_url(metadata["authorization_endpoint"], code_verifier=verifier,
                                                  nonce=nonce)
    page.goto(url)
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any-password")
    login_url = page.url
    page.click("button[type=submit]")
    page.wait_for_url(lambda u: u != login_url)
    if not page.url.startswith(redirect_uri):  # consent, shown on the first login of a client
        page.click("button:has-text('Continue')")
    page.wait_for_url(redirect_uri + "?**")
    query = site.callbacks[-1]
    assert query["state"] == state and query["iss"] == op.issuer, query
    tokens = session.fetch_token(metadata["token_endpoint"], authorization_response=page.url, state=state,
                                 code_verifier=verifier)
    jwks = op.jwks()
    id_token = verified(tokens["id_token"], jwks)
    assert id_token.claims["aud"] == client_id and id_token.claims["nonce"] == nonce
    access = verified(tokens["access_token"], jwks)
    assert access.header["typ"] == "at+jwt", access.header
    return id_token.claims, {"header": access.header, **access.claims}


def test_browser_login_at_idporten_with_pkce(page, site, oidc_providers, screenshot):
    op = oidc_providers.idporten
    id_token, access = browser_login(page, op, oidc_providers.public_client_id, site, "pat-a1")
    screenshot(page, "smoke/idporten callback")
    assert id_token["sub"] == "pat-a1" and id_token["iss"] == op.issuer
    assert access["header"]["typ"] == "at+jwt"
    assert (access["sub"], access["aud"], access["client_id"]) == ("pat-a1", "careplan", oidc_providers.public_client_id)
    assert "role" not in access


def test_browser_login_at_both_providers_keeps_two_sessions(page, new_context, site, oidc_providers):
    """helseid after idporten in one browser: its own session cookie, a role by login name,
    and the confidential client (client_secret_basic)."""
    browser_login(page, oidc_providers.idporten, oidc_providers.public_client_id, site, "rel-b2")
    id_token, access = browser_login(page, oidc_providers.helseid, oidc_providers.confidential_client_id, site,
                                     "clin-7", client_secret=oidc_providers.confidential_client_secret)
    assert (id_token["sub"], id_token["role"]) == ("clin-7", "clinician")
    assert (access["sub"], access["aud"], access["role"]) == ("clin-7", "careplan", "clinician")
    cookies = {c["name"] for c in page.context.cookies()}
    assert {"_session_idporten", "_session_helseid"} <= cookies, cookies
    # A fresh browser (the one above has a helseid session as clin-7).
    _, coordinator = browser_login(new_context().new_page(), oidc_providers.helseid,
                                   oidc_providers.public_client_id, site, "coord-3")
    assert coordinator["role"] == "coordinator"


def test_login_page_font_host_is_blocked(page, oidc_providers, blocked_requests):
    """The dev login page imports a web font from an external host: the block keeps it local."""
    from authlib.common.security import generate_token
    from authlib.integrations.requests_client import OAuth2Session

    op = oidc_providers.idporten
    session = OAuth2Session(oidc_providers.public_client_id, scope="openid", code_challenge_method="S256",
                            redirect_uri="http://127.0.0.1:9/callback")
    url, _ = session.create_authorization_url(op.metadata()["authorization_endpoint"],
                                              code_verifier=generate_token(64))
    page.goto(url)
    assert page.locator("input[name=login]").is_visible()
    assert blocked_requests and all(urlsplit(u).hostname not in ("127.0.0.1", "localhost") for u in blocked_requests)

