"""Fixtures for browser tests of server-rendered pages: Debian's Chromium driven by Playwright
(sync API), axe-core checks, screenshots, and the two local OpenID Providers of infra/oidc.

Every browser context blocks requests to hosts other than 127.0.0.1/localhost (a page that
links a font or script host would otherwise hang on or leak to the network); the blocked URLs
are in ``blocked_requests``. ``make test`` (scripts/test) installs the browser and starts the
providers; missing infrastructure fails under CI=true and skips otherwise (like require_infra).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import pytest
import requests

from careplan_testing import ROOT

AXE_JS = ROOT / "infra" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
OIDC = ROOT / "infra" / "oidc"
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})
LOCALE = "nb-NO"
TIMEZONE = "Europe/Oslo"


def infra_missing(message: str) -> NoReturn:
    """require_infra's rule (careplan_testing) for infrastructure that is a file or a process
    rather than an environment variable: a failure under CI=true, a skip elsewhere."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


# -- browser -------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium (CHROMIUM_PATH, default /usr/bin/chromium; infra/browser/install)."""
    path = os.environ.get("CHROMIUM_PATH") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        infra_missing(f"Chromium ({path} missing; run infra/browser/install)")
    return path


@pytest.fixture(scope="session")
def playwright_browser(chromium_path: str) -> Iterator[Any]:
    """One headless Chromium for the session (Playwright's own browsers are never used)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path, headless=True,
            # No calls home from the browser itself (updates, safe browsing, ...).
            args=["--disable-background-networking", "--disable-component-update",
                  "--disable-domain-reliability", "--no-first-run"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def blocked_requests() -> list[str]:
    """URLs this test's browser contexts refused to fetch (hosts other than 127.0.0.1/localhost)."""
    return []


def _is_local(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    return parts.scheme in ("http", "https", "ws", "wss") and parts.hostname in LOCAL_HOSTS


@pytest.fixture
def new_context(playwright_browser: Any, blocked_requests: list[str]) -> Iterator[Callable[..., Any]]:
    """new_context(**options) -> a fresh BrowserContext (nb-NO, Europe/Oslo, only local hosts
    reachable); closed after the test. Options go to Browser.new_context."""
    contexts: list[Any] = []

    def block_foreign(route: Any) -> None:
        if _is_local(route.request.url):
            route.continue_()
        else:
            blocked_requests.append(route.request.url)
            route.abort("blockedbyclient")

    def make(**options: Any) -> Any:
        context = playwright_browser.new_context(**{"locale": LOCALE, "timezone_id": TIMEZONE, **options})
        context.set_default_timeout(15_000)
        context.route("**/*", block_foreign)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_context: Callable[..., Any], request: pytest.FixtureRequest,
         screenshot: Callable[[Any, str], Path]) -> Iterator[Any]:
    """A page in a fresh context; a failing test leaves a screenshot of it in artifacts/."""
    page = new_context().new_page()
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed and not page.is_closed():
        try:
            screenshot(page, f"FAILED-{request.node.name}")
        except Exception:  # noqa: BLE001 - a screenshot must not hide the test's own failure
            pass


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


# -- axe-core ------------------------------------------------------------------------------

class AxeViolations(list):
    """axe-core violations (dicts: id, impact, help, helpUrl, nodes = CSS targets); str() is
    a readable report for assertion messages: ``assert not found, str(found)``."""

    def ids(self) -> list[str]:
        return [v["id"] for v in self]

    def __str__(self) -> str:
        if not self:
            return "no axe violations"
        lines = [f"{len(self)} axe violation(s):"]
        for v in self:
            lines.append(f"  {v['id']} ({v['impact']}): {v['help']} <{v['helpUrl']}>")
            lines.extend(f"      at {target}" for target in v["nodes"])
        return "\n".join(lines)


_AXE_RUN = """async (impacts) => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations
    .filter((v) => impacts.includes(v.impact))
    .map((v) => ({id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
                  nodes: v.nodes.map((n) => n.target.join(' '))}));
}"""


@pytest.fixture(scope="session")
def axe_script() -> Path:
    if not AXE_JS.is_file():
        infra_missing(f"axe-core ({AXE_JS} missing; run infra/browser/install)")
    return AXE_JS


@pytest.fixture
def axe(axe_script: Path) -> Callable[..., AxeViolations]:
    """axe(page, impacts=("serious", "critical")) -> the page's axe-core violations of those
    impacts (an empty AxeViolations when clean)."""

    def run(page: Any, impacts: tuple[str, ...] = ("serious", "critical")) -> AxeViolations:
        if not page.evaluate("() => typeof window.axe === 'object'"):
            try:
                page.add_script_tag(path=str(axe_script))
            except Exception:  # noqa: BLE001 - e.g. a strict Content-Security-Policy refused the tag
                pass
            if not page.evaluate("() => typeof window.axe === 'object'"):
                # CSP without 'unsafe-inline' blocks the tag; evaluation over CDP is not blocked.
                page.evaluate(axe_script.read_text(encoding="utf-8") + "\n;undefined")
        return AxeViolations(page.evaluate(_AXE_RUN, list(impacts)))

    return run


# -- screenshots ---------------------------------------------------------------------------

@pytest.fixture
def screenshot() -> Callable[[Any, str], Path]:
    """screenshot(page, name) -> artifacts/screenshots/<name>.png (full page)."""

    def take(page: Any, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "page"
        path = SCREENSHOTS / f"{safe}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


# -- OpenID Providers (infra/oidc) -----------------------------------------------------------

@dataclass(frozen=True)
class OidcProvider:
    name: str
    issuer: str

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def metadata(self) -> dict[str, Any]:
        response = requests.get(self.discovery_url, timeout=5)
        response.raise_for_status()
        return response.json()

    def jwks(self) -> dict[str, Any]:
        response = requests.get(self.metadata()["jwks_uri"], timeout=5)
        response.raise_for_status()
        return response.json()


@dataclass(frozen=True)
class OidcProviders:
    """Both providers plus the clients every one of them knows (infra/oidc/env). The resource
    indicator is ``resource`` (``urn:careplan``); access tokens carry ``aud`` = ``audience``."""

    idporten: OidcProvider
    helseid: OidcProvider
    public_client_id: str
    confidential_client_id: str
    confidential_client_secret: str
    system_client_id: str
    system_client_secret: str
    resource: str
    audience: str
    started_here: bool

    def __getitem__(self, name: str) -> OidcProvider:
        return {"idporten": self.idporten, "helseid": self.helseid}[name]

    def service_env(self, *names: str, confidential: bool = False) -> dict[str, str]:
        """The OIDC_* variables a service (careplan_shared.oidc / pages.settings) needs to accept
        these providers' tokens and offer their login: OIDC_ISSUERS plus, per name, ISSUER,
        AUDIENCE, JWKS_URL, DISCOVERY_URL, CLIENT_ID (and CLIENT_SECRET with ``confidential``).
        Add LOGIN_ROLES, LABEL etc. yourself."""
        names = names or ("idporten", "helseid")
        env = {"OIDC_ISSUERS": ",".join(names)}
        for name in names:
            op, prefix = self[name], f"OIDC_{name.upper()}_"
            env |= {prefix + "ISSUER": op.issuer, prefix + "AUDIENCE": self.audience,
                    prefix + "JWKS_URL": f"{op.issuer}/jwks", prefix + "DISCOVERY_URL": op.discovery_url,
                    prefix + "CLIENT_ID": self.confidential_client_id if confidential else self.public_client_id}
            if confidential:
                env[prefix + "CLIENT_SECRET"] = self.confidential_client_secret
        return env


def _oidc_script(name: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(OIDC / name)], capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def oidc_providers() -> Iterator[OidcProviders]:
    """idporten and helseid (oidc-provider 9.13.3): reused if they run (make test starts
    them), else started here for the session and stopped after it."""
    started = False
    if _oidc_script("status", 30).returncode != 0:
        try:
            result = _oidc_script("start", 300)
        except (OSError, subprocess.TimeoutExpired) as e:
            infra_missing(f"OpenID Providers (infra/oidc/start: {e})")
        if result.returncode != 0:
            _oidc_script("stop", 60)
            infra_missing(f"OpenID Providers (infra/oidc/start failed: {(result.stdout + result.stderr)[-1500:]})")
        started = True
    env = dict(re.findall(r"^export (\w+)=(.*)$", _oidc_script("env", 10).stdout, re.M))
    try:
        yield OidcProviders(
            idporten=OidcProvider("idporten", env["OIDC_TEST_IDPORTEN_ISSUER"]),
            helseid=OidcProvider("helseid", env["OIDC_TEST_HELSEID_ISSUER"]),
            public_client_id=env["OIDC_TEST_PUBLIC_CLIENT_ID"],
            confidential_client_id=env["OIDC_TEST_CONFIDENTIAL_CLIENT_ID"],
            confidential_client_secret=env["OIDC_TEST_CONFIDENTIAL_CLIENT_SECRET"],
            system_client_id=env["OIDC_TEST_SYSTEM_CLIENT_ID"],
            system_client_secret=env["OIDC_TEST_SYSTEM_CLIENT_SECRET"],
            resource=env["OIDC_TEST_RESOURCE"],
            audience=env["OIDC_TEST_AUDIENCE"],
            started_here=started,
        )
    finally:
        if started:
            _oidc_script("stop", 60)

