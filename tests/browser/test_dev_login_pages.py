"""The embedded default in the browser, as `make run` starts it: the development login lists
the synthetic people, the demo plan is there, every page passes axe; and the pages hold with
CSP on (no inline script anywhere: the browser reports any violation to the console)."""

from __future__ import annotations

import subprocess

import pytest

from careplan_testing import BIN

pytestmark = pytest.mark.e2e


def test_the_embedded_default_with_its_development_login(start_plan_service, start_notification_service, data_dir,
                                                         new_context, axe, screenshot):
    subprocess.run([str(BIN / "plan-service"), "demo"], check=True, capture_output=True,
                   env={"CAREPLAN_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin"})
    plan = start_plan_service()
    notifications = start_notification_service(PLAN_SERVICE_URL=plan.url, NOTIFICATION_TRANSPORT="feed")
    context = new_context()
    page = context.new_page()

    page.goto(plan.url + "/")
    assert "Innlogging for utvikling" in page.locator("main").inner_text()
    assert "Utviklingsinstallasjon" in page.locator("footer").inner_text()
    screenshot(page, "dev-01-plan-login")
    assert not axe(page)
    with page.expect_navigation():
        page.get_by_role("button", name="Ada Testesen").click()
    assert "/plans/" in page.url  # the patient lands on their plan
    plan_page = page.url.split("#")[0]
    pages = [(plan_page, "dev-02-plan"), (plan_page + "/timeline", "dev-03-timeline"),
             (plan_page + "/access-log", "dev-04-access-log")]
    for url, name in pages:
        page.goto(url)
        screenshot(page, name)
        assert not axe(page), name

    # The pages themselves break no rule of their CSP (axe's own injection above does: a
    # fresh page, without axe, shows the pages alone).
    console: list[str] = []
    clean = context.new_page()
    clean.on("console", lambda message: console.append(message.text))
    for url, _ in pages:
        clean.goto(url)
    assert not [m for m in console if "Content Security Policy" in m], console

    coordinator = new_context().new_page()
    coordinator.goto(notifications.url + "/")
    assert "Ada Testesen" not in coordinator.locator("main").inner_text()  # only coordinators here
    screenshot(coordinator, "dev-05-inbox-login")
    assert not axe(coordinator)
    with coordinator.expect_navigation():
        coordinator.get_by_role("button", name="Kari Koordinator").click()
    screenshot(coordinator, "dev-06-inbox")
    assert not axe(coordinator)
