"""The pages end to end, in Debian's chromium, with real logins against the local OpenID
Providers (infra/oidc: "idporten" for citizens, "helseid" for health personnel).

The EPR writes through the API with a HelseID client-credentials token (no dev tokens
anywhere: OIDC_ALLOW_DEV_TOKENS is off, so the development login is not offered either). The
patient logs in, reads in bokmål, switches to English, writes what matters and gives a
relative consent for goals; the relative sees goals and nothing else; the patient withdraws;
the relative's next page shows nothing of the plan; the patient's access-log page names the
relative's reads; the coordinator finds the missed-meeting prompt with its strategy in the
inbox, acknowledges it and opens the plan (read-only). axe-core runs on every page; every page
is photographed into artifacts/screenshots/.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.e2e

WHAT_MATTERS = "Å ha noe å stå opp til om morgenen"
GOAL = "Jobbe to dager i uka"
INFORMATION = "Rett til individuell plan og koordinator, forklart muntlig"
STRATEGY = "Koordinator ringer samme dag, hjemmebesøk dagen etter"
PLACE = "Kafeen ved biblioteket"


class Visit:
    """Every page the test looks at: axe (no serious or critical violation) and a screenshot."""

    def __init__(self, axe, screenshot):
        self.axe, self.screenshot, self.seen = axe, screenshot, []

    def check(self, page: Any, name: str) -> None:
        page.wait_for_load_state("load")
        self.screenshot(page, name)
        violations = self.axe(page)
        assert not violations, f"{name}: {violations}"
        self.seen.append(name)


def oidc_login(page: Any, button: str, login: str) -> None:
    """Click the login button on our login page, then log in at the provider (its
    devInteractions form; consent on a client's first login) and come back."""
    start = page.url
    page.get_by_role("link", name=re.compile(button)).click()
    page.wait_for_url(lambda u: u != start)
    if page.locator("input[name=login]").count():
        page.fill("input[name=login]", login)
        page.fill("input[name=password]", "synthetic")
        at = page.url
        page.click("button[type=submit]")
        page.wait_for_url(lambda u: u != at)
    if page.locator("button:has-text('Continue')").count():  # the provider's consent screen
        page.click("button:has-text('Continue')")
    page.wait_for_load_state("load")


def client_credentials(oidc_providers) -> str:
    op = oidc_providers.helseid
    response = requests.post(op.metadata()["token_endpoint"],
                             data={"grant_type": "client_credentials", "resource": oidc_providers.resource},
                             auth=(oidc_providers.system_client_id, oidc_providers.system_client_secret), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


@pytest.fixture
def stack(oidc_providers, start_plan_service, start_notification_service):
    env = oidc_providers.service_env("idporten", "helseid") | {
        "OIDC_ALLOW_DEV_TOKENS": "false",
        "OIDC_IDPORTEN_LOGIN_ROLES": "patient,relative", "OIDC_IDPORTEN_LABEL": "ID-porten",
        "OIDC_HELSEID_LABEL": "HelseID",
    }
    plan = start_plan_service(**env)
    token = client_credentials(oidc_providers)
    notifications = start_notification_service(
        **env, NOTIFICATION_TRANSPORT="feed", PLAN_SERVICE_URL=plan.url, NOTIFICATION_FEED_TOKEN=token,
        NOTIFICATION_PLAN_PAGES_URL=plan.url)
    return plan, notifications, {"Authorization": f"Bearer {token}"}


def post(plan_url: str, auth: dict[str, str], path: str, body: Any) -> dict[str, Any]:
    response = requests.post(f"{plan_url}{path}", json=body, headers=auth, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()


def test_patient_relative_and_coordinator_through_their_pages(stack, new_context, axe, screenshot):
    plan, notifications, epr = stack
    visit = Visit(axe, screenshot)

    # The EPR (HelseID system account) opens the plan and records what the clinicians did.
    plan_id = post(plan.url, epr, "/v1/plans", {"patient_id": "pat-a1", "service_level": "municipal",
                                                "age_band": "18-25"})["plan_id"]
    two_hours_ago = (datetime.now(timezone.utc) - timedelta(hours=2)).isoformat()
    post(plan.url, epr, f"/v1/plans/{plan_id}/events", [
        {"type": "CoordinatorAssigned", "coordinator_id": "k1", "name": "Kari Koordinator",
         "service_level": "specialist"},
        {"type": "GoalSet", "goal_id": "g1", "text": GOAL, "expressed_by": "patient"},
        {"type": "InformationGiven", "information_id": "i1", "topic": "rights", "form": "oral",
         "description": INFORMATION},
        {"type": "ParticipantAdded", "participant_id": "rel-b1", "kind": "relative", "name": "Bjørn Testesen",
         "relation": "bror"},
        {"type": "TriangleMeetingScheduled", "meeting_id": "m1", "scheduled_for": two_hours_ago, "place": PLACE,
         "transport": "bussbillett", "companion": "storebror", "no_show_strategy": STRATEGY},
        {"type": "TriangleMeetingMissed", "meeting_id": "m1"},
    ])

    # The patient logs in with ID-porten and reads the plan in bokmål, on a phone-wide screen.
    patient = new_context(viewport={"width": 375, "height": 800}).new_page()
    patient.goto(plan.url + "/")
    assert "/login" in patient.url
    visit.check(patient, "01-login-nb")
    assert patient.locator("text=Innlogging for utvikling").count() == 0  # no dev login in production shape
    oidc_login(patient, "ID-porten som pasient", "pat-a1")
    patient.goto(f"{plan.url}/plans/{plan_id}")
    body = patient.locator("main").inner_text()
    assert "Det som er viktig for meg" in body and GOAL in body and INFORMATION in body
    assert patient.evaluate("document.documentElement.scrollWidth") <= 375, "wider than the phone"
    visit.check(patient, "02-patient-plan-nb")

    # Keyboard only: the skip link is the first stop and leads to the content.
    patient.keyboard.press("Tab")
    assert patient.evaluate("document.activeElement.className") == "skip"
    patient.keyboard.press("Enter")
    assert patient.evaluate("document.activeElement.id") == "main"

    # English, remembered for the next page.
    with patient.expect_navigation():
        patient.get_by_role("button", name="English").click()
    assert "What matters to me" in patient.locator("main").inner_text()
    patient.goto(f"{plan.url}/plans/{plan_id}")
    assert patient.locator("html").get_attribute("lang") == "en"
    visit.check(patient, "03-patient-plan-en")

    # What matters, in the patient's own words, typed and sent from the keyboard.
    patient.focus("#wm-text")
    patient.keyboard.type(WHAT_MATTERS)
    for _ in range(5):  # Tab on to the form's own button
        patient.keyboard.press("Tab")
        if patient.evaluate("document.activeElement.closest('#what-matters-form') !== null "
                            "&& document.activeElement.type === 'submit'"):
            break
    else:
        pytest.fail("the save button cannot be reached with Tab")
    with patient.expect_navigation():
        patient.keyboard.press("Enter")
    assert WHAT_MATTERS in patient.locator("main").inner_text()

    # Consent for the relative: goals only.
    consent = patient.locator("form[id^=consent-]").filter(has=patient.locator("input[value='rel-b1']"))
    patient.locator("details.consent").filter(has=consent).locator("summary").click()
    until = (datetime.now(timezone.utc) + timedelta(days=90)).date()
    consent.locator("input[type=date]").fill(until.isoformat())
    for box in consent.locator("input[name=scope]").all():
        if box.get_attribute("value") == "goals":
            box.check()
        else:
            box.uncheck()
    with patient.expect_navigation():
        consent.locator("button[type=submit]").click()
    visit.check(patient, "04-patient-consent-given")

    # The relative (their own browser) logs in with ID-porten and sees the goals, nothing else.
    relative = new_context().new_page()
    relative.goto(plan.url + "/")
    oidc_login(relative, "ID-porten som pårørende", "rel-b1")
    visit.check(relative, "05-relative-home")
    relative.goto(f"{plan.url}/plans/{plan_id}")
    shown = relative.locator("main").inner_text()
    assert GOAL in shown
    assert str(until.year) in shown and "mål" in shown.lower()  # the line saying what the consent covers, until when
    for hidden in (WHAT_MATTERS, INFORMATION, STRATEGY, PLACE, "pat-a1", "Kari Koordinator"):
        assert hidden not in shown, f"the relative sees {hidden!r}"
    visit.check(relative, "06-relative-plan")
    relative.goto(f"{plan.url}/plans/{plan_id}/timeline")
    shown = relative.locator("main").inner_text()
    assert GOAL in shown and INFORMATION not in shown and WHAT_MATTERS not in shown and PLACE not in shown
    visit.check(relative, "07-relative-timeline")

    # The patient withdraws; the relative's next page shows nothing of the plan.
    patient.goto(f"{plan.url}/plans/{plan_id}")
    with patient.expect_navigation():
        patient.locator("form[id^=withdraw-]").filter(has=patient.locator("input[value='rel-b1']")) \
            .locator("button").click()
    relative.goto(f"{plan.url}/plans/{plan_id}")
    ended = relative.locator("main").inner_text()
    assert GOAL not in ended and WHAT_MATTERS not in ended
    visit.check(relative, "08-relative-access-ended")

    # The patient's timeline and "who has seen my plan", naming the relative's reads.
    patient.goto(f"{plan.url}/plans/{plan_id}/timeline")
    assert WHAT_MATTERS[:20] in patient.locator("main").inner_text()
    visit.check(patient, "09-patient-timeline")
    patient.goto(f"{plan.url}/plans/{plan_id}/access-log")
    log_text = patient.locator("main").inner_text()
    assert "rel-b1" in log_text
    visit.check(patient, "10-patient-access-log")

    # The coordinator logs in to the inbox with HelseID and finds the missed meeting.
    coordinator = new_context().new_page()
    coordinator.goto(notifications.url + "/")
    visit.check(coordinator, "11-inbox-login")
    oidc_login(coordinator, "HelseID", "k1")
    visit.check(coordinator, "12-inbox")
    deadline = datetime.now() + timedelta(seconds=60)
    missed = coordinator.locator("ul.prompts li")
    while True:  # the prompt arrives through the feed within a few seconds
        coordinator.goto(notifications.url + "/?reason=no_show_follow_up")
        if missed.count():
            break
        assert datetime.now() < deadline, "the missed-meeting prompt did not reach the inbox"
        coordinator.wait_for_timeout(500)
    visit.check(coordinator, "13-inbox-filtered")
    with coordinator.expect_navigation():
        missed.first.locator("h2 a").click()
    detail = coordinator.locator("main").inner_text()
    assert STRATEGY in detail and PLACE in detail and "bussbillett" in detail and "storebror" in detail
    visit.check(coordinator, "14-prompt")
    with coordinator.expect_navigation():
        coordinator.locator("form[action$='/acknowledge'] button").first.click()
    visit.check(coordinator, "15-prompt-acknowledged")
    coordinator.goto(notifications.url + "/?reason=no_show_follow_up")
    assert missed.count() == 0  # acknowledged: no longer open

    # From the prompt to the plan page: plan-service asks HelseID, which knows k1 already.
    coordinator.go_back()
    with coordinator.expect_navigation():
        coordinator.get_by_role("link", name=re.compile("Åpne planen|Open the plan")).first.click()
    if "/login" in coordinator.url:
        oidc_login(coordinator, "HelseID", "k1")
    if f"/plans/{plan_id}" not in coordinator.url:
        coordinator.goto(f"{plan.url}/plans/{plan_id}")
    read_only = coordinator.locator("main").inner_text()
    assert GOAL in read_only and WHAT_MATTERS in read_only
    assert coordinator.locator("#wm-text").count() == 0 and coordinator.locator("form[id^=consent-]").count() == 0
    visit.check(coordinator, "16-coordinator-plan")

    assert len(visit.seen) == 16
