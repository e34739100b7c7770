"""plan-service's pages (Flask test client, in-memory store): the patient's plan, the
relative's view, the coordinator's read-only view, the timeline and "Hvem har sett planen min";
Norwegian bokmål by default, English by the switch. Same rules as the API: the policy, the one
projection, the request schemas, the access log."""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from plan_service.adapters.access_log import AccessLogUnavailable
from plan_service.domain import event_types
from plan_service.pages import present

PAGES = Path(__file__).resolve().parents[2] / "plan_service" / "pages"
PATIENT, RELATIVE, OTHER_RELATIVE, COORDINATOR, OTHER_COORDINATOR = "pat-a1", "rel-b1", "rel-d2", "k1", "k2"

# One marker per section a consent can cover (and the record's): a relative whose consent
# covers goals must see GOAL-MARK and none of the others.
MARKERS = {
    "what_matters": ["WM-MARK"],
    "information": ["INFO-MARK"],
    "participants": ["COORD-MARK", "PRO-MARK", "Dina-MARK", "Bjorn-MARK"],
    "evaluations": ["EVAL-MARK"],
    "meetings": ["PLACE-MARK", "NOSHOW-MARK", "TRANSPORT-MARK", "COMPANION-MARK"],
    "record": [PATIENT, "clin-7", "epr-1"],
}
# Headings and labels of the sections other than goals (nb), which must not show either.
OTHER_SECTION_WORDS = ["Det som er viktig", "Informasjon", "Hvem som er med", "Personer", "Møter", "Trekantsamtale",
                       "Evaluering", "Koordinator", "Pårørende"]


# -- helpers ----------------------------------------------------------------------------------

def ago(days: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(days=days)).isoformat()


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def login(app, subject: str, role: str):
    client = app.test_client()
    token = csrf_token(client.get("/login").get_data(as_text=True))
    response = client.post("/login/dev", data={"csrf_token": token, "subject": subject, "role": role})
    assert response.status_code == 302, response.status_code
    return client


def text(response) -> str:
    return response.get_data(as_text=True)


def switch_language(client, lang: str) -> None:
    token = csrf_token(text(client.get("/", follow_redirects=True)))
    response = client.post("/language", data={"csrf_token": token, "lang": lang, "next": "/"})
    assert response.status_code == 302


def post_form(client, path: str, data: dict, page: str):
    """A form posted as a browser would: with the CSRF token of the page it is on."""
    token = csrf_token(text(client.get(page)))
    return client.post(path, data={"csrf_token": token, **data})


class Page(HTMLParser):
    """What the accessibility checks need from a page."""

    def __init__(self, html: str):
        super().__init__()
        self.h1 = 0
        self.labels: set[str] = set()
        self.fields: list[dict[str, str | None]] = []
        self.tags: set[str] = set()
        self.styled = 0
        self.checkboxes_outside_fieldset = 0
        self.fieldsets_without_legend = 0
        self._fieldsets: list[bool] = []  # has a legend
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.add(tag)
        if "style" in attributes:
            self.styled += 1
        if tag == "h1":
            self.h1 += 1
        elif tag == "label" and attributes.get("for"):
            self.labels.add(attributes["for"])
        elif tag == "fieldset":
            self._fieldsets.append(False)
        elif tag == "legend" and self._fieldsets:
            self._fieldsets[-1] = True
        elif tag in ("input", "textarea", "select") and attributes.get("type") not in ("hidden", "submit", "button"):
            self.fields.append(attributes)
            if attributes.get("type") == "checkbox" and not self._fieldsets:
                self.checkboxes_outside_fieldset += 1

    def handle_endtag(self, tag):
        if tag == "fieldset" and self._fieldsets:
            self.fieldsets_without_legend += not self._fieldsets.pop()


def check_page(html: str) -> None:
    """One h1, landmarks, a label for every field, checkboxes grouped under a legend, no
    inline script or style."""
    page = Page(html)
    assert page.h1 == 1, f"{page.h1} h1 elements"
    assert {"main", "header", "nav", "footer"} <= page.tags
    for field in page.fields:
        assert field.get("id") in page.labels, f"no label for {field}"
    assert page.checkboxes_outside_fieldset == 0 and page.fieldsets_without_legend == 0
    assert page.styled == 0 and "<script" not in html.lower()


# -- the plan -------------------------------------------------------------------------------

@pytest.fixture
def plan_id(client, writer, open_plan) -> str:
    """A synthetic plan for pat-a1 with something in every section, coordinator k1, relatives
    rel-b1 (consent for goals) and rel-d2 (no consent)."""
    plan = open_plan(patient_id=PATIENT)
    events = [
        {"type": "CoordinatorAssigned", "coordinator_id": COORDINATOR, "name": "COORD-MARK Kari",
         "service_level": "municipal"},
        {"type": "ParticipantAdded", "participant_id": "pro-1", "kind": "professional", "name": "PRO-MARK",
         "service_level": "specialist"},
        {"type": "ParticipantAdded", "participant_id": RELATIVE, "kind": "relative", "name": "Bjorn-MARK",
         "relation": "bror"},
        {"type": "ParticipantAdded", "participant_id": OTHER_RELATIVE, "kind": "relative", "name": "Dina-MARK"},
        {"type": "WhatMattersRecorded", "text": "WM-MARK å ha en jobb", "language": "nb"},
        {"type": "GoalSet", "goal_id": "g1", "text": "GOAL-MARK jobbe", "expressed_by": "patient"},
        {"type": "GoalRevised", "goal_id": "g1", "text": "GOAL-MARK jobbe litt", "reason": "REASON-MARK"},
        {"type": "GoalSet", "goal_id": "g2", "text": "GOAL-MARK sove", "expressed_by": "clinician"},
        {"type": "GoalAchieved", "goal_id": "g2"},
        {"type": "InformationGiven", "information_id": "i1", "topic": "rights", "form": "oral",
         "description": "INFO-MARK rettigheter"},
        {"type": "EvaluationScheduled", "evaluation_id": "e1", "scheduled_for": ago(100)},
        {"type": "EvaluationHeld", "evaluation_id": "e1", "outcome": "EVAL-MARK", "patient_took_part": True},
        {"type": "TriangleMeetingScheduled", "meeting_id": "m1", "scheduled_for": ago(-14), "place": "PLACE-MARK",
         "transport": "TRANSPORT-MARK", "companion": "COMPANION-MARK", "no_show_strategy": "NOSHOW-MARK"},
        {"type": "RelativeConsentGiven", "relative_id": RELATIVE, "scope": ["goals"], "given_how": "oral"},
    ]
    response = client.post(f"/v1/plans/{plan}/events", json=events, headers=writer)
    assert response.status_code == 201, response.json
    return plan


def version(plans, plan_id) -> int:
    return plans.get_plan(uuid.UUID(plan_id)).version


def log_entries(app, plan_id):
    """The plan's access-log entries, oldest first."""
    return [e for _, e in reversed(app.extensions["careplan"].access_log.entries(str(plan_id), limit=1000))]


ROLE_PAGES = {
    (PATIENT, "patient"): ["/", "/plans/{id}", "/plans/{id}/timeline", "/plans/{id}/access-log"],
    (RELATIVE, "relative"): ["/", "/plans/{id}", "/plans/{id}/timeline"],
    (COORDINATOR, "coordinator"): ["/", "/plans/{id}", "/plans/{id}/timeline", "/plans/{id}/access-log"],
}
NB_WORDS = {"/": None, "/plans/{id}": "Mål", "/plans/{id}/timeline": "Tidslinje",
            "/plans/{id}/access-log": "Hvem har sett planen"}
EN_WORDS = {"/": None, "/plans/{id}": "Goals", "/plans/{id}/timeline": "Timeline",
            "/plans/{id}/access-log": "Who has seen"}


@pytest.mark.parametrize("who", list(ROLE_PAGES), ids=[role for _, role in ROLE_PAGES])
def test_each_page_renders_for_its_roles_in_bokmal_and_english(app, plan_id, who):
    client = login(app, *who)
    for lang, words, marker in (("nb", NB_WORDS, "Logg ut"), ("en", EN_WORDS, "Log out")):
        if lang == "en":
            switch_language(client, "en")
        for template in ROLE_PAGES[who]:
            response = client.get(template.format(id=plan_id), follow_redirects=True)
            assert response.status_code == 200, (template, response.status_code)
            html = text(response)
            assert f'<html lang="{lang}">' in html and marker in html
            if words[template]:
                assert words[template] in html
            assert "GOAL-MARK" in html or template == "/plans/{id}/access-log" or (template == "/" and who[1] != "patient")
            check_page(html)
            if template != "/":
                assert response.headers["Content-Security-Policy"].startswith("default-src 'none'; script-src 'self'")


def test_home_for_each_role(app, plan_id):
    patient = login(app, PATIENT, "patient")
    response = patient.get("/")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/plans/{plan_id}")
    nobody = text(login(app, "pat-c2", "patient").get("/"))
    assert "Du har ikke en individuell plan ennå." in nobody
    check_page(nobody)
    relative = text(login(app, RELATIVE, "relative").get("/"))
    assert f"/plans/{plan_id}" in relative and "Du kan se: Mål." in relative and PATIENT not in relative
    coordinator = text(login(app, COORDINATOR, "coordinator").get("/"))
    assert f"/plans/{plan_id}" in coordinator and PATIENT not in coordinator  # a list names no one: the plan page does (logged)
    other = text(login(app, OTHER_COORDINATOR, "coordinator").get("/"))
    assert plan_id not in other and "Du er ikke koordinator for noen planer ennå." in other
    no_consent = text(login(app, OTHER_RELATIVE, "relative").get("/"))  # added, never given a consent
    assert plan_id not in no_consent and "Ingen har delt en plan med deg." in no_consent


def test_the_plan_page_shows_each_section_in_order(app, plan_id):
    html = text(login(app, PATIENT, "patient").get(f"/plans/{plan_id}"))
    order = [html.index(f'id="{section}"') for section in ("what-matters", "goals", "information", "people", "meetings")]
    assert order == sorted(order)
    for marker in ("WM-MARK", "GOAL-MARK jobbe litt", "REASON-MARK", "INFO-MARK", "muntlig", "COORD-MARK", "PRO-MARK",
                   "Spesialisthelsetjenesten", "Bjorn-MARK", "Kan se: Mål.", "EVAL-MARK", "PLACE-MARK", "NOSHOW-MARK",
                   "TRANSPORT-MARK", "COMPANION-MARK", "Hvis du ikke kommer", "Nådd", "Underveis",
                   "Målet er formulert av pasienten.", "Målet er formulert av en fagperson.",
                   "Hvem har sett planen min"):
        assert marker in html, marker
    # the coordinator reads it, and may not change anything
    coordinator = text(login(app, COORDINATOR, "coordinator").get(f"/plans/{plan_id}"))
    assert "WM-MARK" in coordinator and "<form" not in coordinator.split('id="main"')[1]


# -- the patient's forms ------------------------------------------------------------------

def test_the_patient_writes_what_matters(app, plans, plan_id):
    client = login(app, PATIENT, "patient")
    before = version(plans, plan_id)
    response = post_form(client, f"/plans/{plan_id}/what-matters", {"text": "Å gå tur med hunden\r\nhver dag"},
                         page=f"/plans/{plan_id}")
    assert response.status_code == 303 and response.headers["Location"].endswith(f"/plans/{plan_id}#what-matters")
    plan = plans.get_plan(uuid.UUID(plan_id))
    assert plan.version == before + 1
    assert plan.what_matters[-1].text == "Å gå tur med hunden\nhver dag" and plan.what_matters[-1].language == "nb"
    event = list(plans.plan_events(plan.id))[-1]
    assert type(event).__name__ == "WhatMattersRecorded" and event.recorded_by == {"role": "patient", "id": PATIENT}
    html = text(client.get(f"/plans/{plan_id}"))
    assert "Å gå tur med hunden" in html and "Lagret." in html
    assert "WM-MARK" in html  # what was written before, under "Skrevet tidligere"
    entry = [e for e in log_entries(app, plan_id) if e.action == "write_events"][-1]
    assert (entry.subject, entry.role, entry.result) == (PATIENT, "patient", "allowed")


def test_the_patient_gives_changes_and_withdraws_a_consent(app, plans, plan_id):
    patient = login(app, PATIENT, "patient")
    page = f"/plans/{plan_id}"
    assert "Gi Dina-MARK samtykke til å se deler av planen din" in text(patient.get(page))
    until = (datetime.now(ZoneInfo("Europe/Oslo")) + timedelta(days=30)).date()
    response = post_form(patient, f"/plans/{plan_id}/consents",
                         {"relative_id": OTHER_RELATIVE, "scope": ["goals", "meetings"], "valid_until": until.isoformat()},
                         page=page)
    assert response.status_code == 303, text(response)
    consent = plans.get_plan(uuid.UUID(plan_id)).consents[OTHER_RELATIVE]
    assert consent.scope == ["goals", "meetings"] and consent.given_how == "digital"
    assert consent.valid_until.astimezone(ZoneInfo("Europe/Oslo")).date() == until
    html = text(patient.get(page))
    assert "Endre hva Dina-MARK får se" in html and "Trekk tilbake samtykket for Dina-MARK" in html

    relative = login(app, OTHER_RELATIVE, "relative")
    seen = text(relative.get(page))
    assert "GOAL-MARK" in seen and "PLACE-MARK" in seen and "WM-MARK" not in seen
    assert "Pasienten har gitt deg samtykke til å se: Mål, Trekantsamtaler." in seen

    # change: only what matters, until withdrawn (the date field left empty)
    assert post_form(patient, f"/plans/{plan_id}/consents",
                     {"relative_id": OTHER_RELATIVE, "scope": ["what_matters"], "valid_until": ""},
                     page=page).status_code == 303
    consent = plans.get_plan(uuid.UUID(plan_id)).consents[OTHER_RELATIVE]
    assert consent.scope == ["what_matters"] and consent.valid_until is None
    seen = text(relative.get(page))
    assert "WM-MARK" in seen and "GOAL-MARK" not in seen and "Samtykket gjelder til pasienten trekker det tilbake." in seen

    # withdraw: from the next request on, nothing
    response = post_form(patient, f"/plans/{plan_id}/consents/withdraw", {"relative_id": OTHER_RELATIVE}, page=page)
    assert response.status_code == 303
    assert plans.get_plan(uuid.UUID(plan_id)).consents[OTHER_RELATIVE].withdrawn_at is not None
    assert "Samtykket er trukket tilbake." in text(patient.get(page))
    ended = relative.get(page)
    assert ended.status_code == 403 and "Tilgangen din er avsluttet" in text(ended) and "WM-MARK" not in text(ended)


def test_a_form_without_its_csrf_token_is_refused_and_nothing_stored(app, plans, plan_id):
    client = login(app, PATIENT, "patient")
    before = version(plans, plan_id)
    for path, data in ((f"/plans/{plan_id}/what-matters", {"text": "uten token"}),
                       (f"/plans/{plan_id}/consents", {"relative_id": OTHER_RELATIVE, "scope": "goals"}),
                       (f"/plans/{plan_id}/consents/withdraw", {"relative_id": RELATIVE})):
        for token in (None, "not-a-token"):
            response = client.post(path, data={**data, **({"csrf_token": token} if token else {})})
            assert response.status_code == 400
            assert "Skjemaet var utløpt" in text(response)
    assert version(plans, plan_id) == before
    assert not [e for e in log_entries(app, plan_id) if e.action == "write_events" and e.subject == PATIENT]


@pytest.mark.parametrize(("path", "data", "field", "message"), [
    ("what-matters", {"text": ""}, "wm-text", "Skriv noe først."),
    ("what-matters", {"text": "   \r\n "}, "wm-text", "Skriv noe først."),
    ("what-matters", {"text": "x" * 4001}, "wm-text", "Det ble for langt. Hold deg under 4000 tegn."),
    ("what-matters", {"text": "null\x00tegn"}, "wm-text", "Bruk bare vanlige bokstaver, tall og tegn."),
    ("consents", {"relative_id": OTHER_RELATIVE}, "c2-scope", "Velg minst én del av planen din."),
    ("consents", {"relative_id": OTHER_RELATIVE, "scope": ["goals", "secrets"]}, "c2-scope", "Velg fra listen."),
    ("consents", {"relative_id": OTHER_RELATIVE, "scope": "goals", "valid_until": "2001-01-01"}, "c2-until",
     "Velg en dag som ikke har vært ennå."),
    ("consents", {"relative_id": OTHER_RELATIVE, "scope": "goals", "valid_until": "31.02.2030"}, "c2-until",
     "Skriv datoen som dag, måned og år"),
    ("consents", {"relative_id": OTHER_RELATIVE, "scope": "goals", "valid_until": "2099-01-01"}, "c2-until",
     "Velg en dag som er høyst ti år fram i tid."),
    # rules of the plan (domain Invalid / Conflict), said in plain words
    ("consents", {"relative_id": "pro-1", "scope": "goals"}, None, "Denne personen er ikke lenger med i planen din."),
    ("consents/withdraw", {"relative_id": OTHER_RELATIVE}, None, "Det finnes ikke noe samtykke å trekke tilbake."),
])
def test_invalid_input_shows_the_form_again_with_the_message_and_stores_nothing(app, plans, plan_id, path, data,
                                                                                  field, message):
    client = login(app, PATIENT, "patient")
    before = version(plans, plan_id)
    response = post_form(client, f"/plans/{plan_id}/{path}", data, page=f"/plans/{plan_id}")
    html = text(response)
    assert response.status_code == 422, html[:500]
    assert message in html
    if field:  # beside its field
        assert re.search(rf'id="{field}-error">[^<]*{re.escape(message)}', html), html
        assert 'aria-invalid="true"' in html
    else:  # a rule of the plan: at the top, or in its form
        assert 'role="alert"' in html
    check_page(html)
    assert version(plans, plan_id) == before
    assert [e for e in log_entries(app, plan_id) if e.action == "write_events"][-1].result == "rejected"


def test_a_withdrawn_consent_cannot_be_withdrawn_again(app, plans, plan_id):
    client = login(app, PATIENT, "patient")
    page = f"/plans/{plan_id}"
    assert post_form(client, f"{page}/consents/withdraw", {"relative_id": RELATIVE}, page=page).status_code == 303
    before = version(plans, plan_id)
    response = post_form(client, f"{page}/consents/withdraw", {"relative_id": RELATIVE}, page=page)
    assert response.status_code == 422 and "Dette samtykket er allerede trukket tilbake." in text(response)
    assert version(plans, plan_id) == before


@pytest.mark.parametrize("value", ["ok", "", " ", "a" * 4000, "a" * 4001, "x\x01y", "linje\nlinje\ttab", "é"])
def test_the_page_accepts_exactly_what_the_api_accepts(app, client, token, plan_id, value):
    api = client.post(f"/v1/plans/{plan_id}/events", json={"type": "WhatMattersRecorded", "text": value},
                      headers=token("patient", PATIENT))
    page = post_form(login(app, PATIENT, "patient"), f"/plans/{plan_id}/what-matters", {"text": value},
                     page=f"/plans/{plan_id}")
    assert (api.status_code, page.status_code) in ((201, 303), (422, 422))


def test_only_the_patient_writes_through_the_pages(app, plans, plan_id):
    before = version(plans, plan_id)
    coordinator = login(app, COORDINATOR, "coordinator")
    response = post_form(coordinator, f"/plans/{plan_id}/what-matters", {"text": "koordinator"}, page=f"/plans/{plan_id}")
    assert response.status_code == 403
    relative = login(app, RELATIVE, "relative")
    response = post_form(relative, f"/plans/{plan_id}/consents/withdraw", {"relative_id": RELATIVE},
                         page=f"/plans/{plan_id}")
    assert response.status_code == 403
    other_patient = login(app, "pat-c2", "patient")
    token = csrf_token(text(other_patient.get("/")))
    response = other_patient.post(f"/plans/{plan_id}/what-matters", data={"csrf_token": token, "text": "ikke min"})
    assert response.status_code == 403
    assert version(plans, plan_id) == before
    denied = [(e.subject, e.result) for e in log_entries(app, plan_id) if e.action == "write_events" and e.role != "integration"]
    assert denied == [(COORDINATOR, "denied"), (RELATIVE, "denied"), ("pat-c2", "denied")]


def test_a_closed_plan_shows_no_forms_and_takes_nothing(app, client, writer, plans, plan_id):
    assert client.post(f"/v1/plans/{plan_id}/events", headers=writer,
                       json={"type": "PlanClosed", "reason": "goals_reached", "note": "NOTE-MARK"}).status_code == 201
    patient = login(app, PATIENT, "patient")
    html = text(patient.get(f"/plans/{plan_id}"))
    assert "Denne planen ble avsluttet" in html and "målene er nådd" in html and "NOTE-MARK" not in html
    assert "<form" not in html.split('id="main"')[1]
    before = version(plans, plan_id)
    response = post_form(patient, f"/plans/{plan_id}/what-matters", {"text": "etterpå"}, page=f"/plans/{plan_id}")
    assert response.status_code == 422 and "Planen er avsluttet, så ingenting mer kan legges til." in text(response)
    assert version(plans, plan_id) == before


# -- what a relative sees -------------------------------------------------------------------

def test_a_relative_with_consent_for_goals_sees_goals_and_nothing_else(app, plan_id):
    client = login(app, RELATIVE, "relative")
    for path in (f"/plans/{plan_id}", f"/plans/{plan_id}/timeline"):
        html = text(client.get(path))
        assert "GOAL-MARK jobbe litt" in html and "GOAL-MARK sove" in html
        assert "Pasienten har gitt deg samtykke til å se: Mål." in html
        assert "Samtykket gjelder til pasienten trekker det tilbake." in html
        main = html.split('id="main"')[1].split("<footer")[0]
        for section, markers in MARKERS.items():
            for marker in markers:
                assert marker not in main, (path, section, marker)
        for words in OTHER_SECTION_WORDS:
            assert words not in main, (path, words)
        for kind in ("words", "info", "people", "meeting"):
            assert f"k-{kind}" not in main, (path, kind)
        for hidden in ('id="what-matters"', 'id="information"', 'id="people"', 'id="meetings"', "access-log"):
            assert hidden not in main
    timeline = text(client.get(f"/plans/{plan_id}/timeline"))
    assert "Individuell plan opprettet" in timeline  # that the plan exists: always shown
    assert "Mål nådd: GOAL-MARK sove" in timeline and "Mål satt (pasient): GOAL-MARK jobbe" in timeline


def test_after_withdrawal_the_relative_is_told_access_ended_and_sees_nothing(app, plan_id):
    relative = login(app, RELATIVE, "relative")
    assert relative.get(f"/plans/{plan_id}").status_code == 200
    patient = login(app, PATIENT, "patient")
    assert post_form(patient, f"/plans/{plan_id}/consents/withdraw", {"relative_id": RELATIVE},
                     page=f"/plans/{plan_id}").status_code == 303
    for path in (f"/plans/{plan_id}", f"/plans/{plan_id}/timeline"):
        response = relative.get(path)
        html = text(response)
        assert response.status_code == 403
        assert "Tilgangen din er avsluttet" in html and "Du kan ikke lenger se denne planen." in html
        assert "GOAL-MARK" not in html and "Individuell plan opprettet" not in html
        check_page(html)
    home = text(relative.get("/"))
    assert plan_id not in home and "Planer du ikke lenger har tilgang til: 1." in home
    entries = [(e.subject, e.action, e.result) for e in log_entries(app, plan_id) if e.subject == RELATIVE]
    assert entries[-2:] == [(RELATIVE, "read_plan", "denied"), (RELATIVE, "read_timeline", "denied")]


def test_an_expired_consent_ends_access_too(app, client, token, plan_id):
    until = (datetime.now(timezone.utc) + timedelta(seconds=1.5)).isoformat()
    response = client.post(f"/v1/plans/{plan_id}/events", headers=token("patient", PATIENT),
                           json={"type": "RelativeConsentGiven", "relative_id": OTHER_RELATIVE, "scope": ["goals"],
                                 "valid_until": until})
    assert response.status_code == 201, response.json
    relative = login(app, OTHER_RELATIVE, "relative")
    assert relative.get(f"/plans/{plan_id}").status_code == 200
    time.sleep(1.6)
    response = relative.get(f"/plans/{plan_id}")
    assert response.status_code == 403 and "Tilgangen din er avsluttet" in text(response)
    assert "GOAL-MARK" not in text(response)


def test_a_coordinator_not_assigned_is_refused(app, plan_id):
    client = login(app, OTHER_COORDINATOR, "coordinator")
    for path in ("", "/timeline", "/access-log"):
        response = client.get(f"/plans/{plan_id}{path}")
        assert response.status_code == 403
        html = text(response)
        assert "Du har ikke tilgang til dette." in html and "GOAL-MARK" not in html and PATIENT not in html
    assert [(e.subject, e.result) for e in log_entries(app, plan_id)][-3:] == [(OTHER_COORDINATOR, "denied")] * 3


def test_no_such_plan_is_a_404_page_and_no_log_entry(app):
    client = login(app, PATIENT, "patient")
    missing = uuid.uuid4()
    response = client.get(f"/plans/{missing}")
    assert response.status_code == 404 and "Vi fant ikke denne siden." in text(response)
    assert log_entries(app, missing) == []


# -- the access log -------------------------------------------------------------------------

@pytest.mark.parametrize(("subject", "role"), [(PATIENT, "patient"), (RELATIVE, "relative"), (COORDINATOR, "coordinator")])
def test_each_read_of_a_plan_page_adds_an_access_log_entry_naming_the_reader(app, plan_id, subject, role):
    client = login(app, subject, role)
    pages = {"read_plan": f"/plans/{plan_id}", "read_timeline": f"/plans/{plan_id}/timeline"}
    if role != "relative":
        pages["read_access_log"] = f"/plans/{plan_id}/access-log"
    for action, path in pages.items():
        before = len(log_entries(app, plan_id))
        assert client.get(path).status_code == 200
        entries = log_entries(app, plan_id)
        assert len(entries) == before + 1
        assert (entries[-1].subject, entries[-1].role, entries[-1].action, entries[-1].result) == (
            subject, role, action, "allowed")


def test_who_has_seen_my_plan_in_plain_words_newest_first_paged(app, plan_id):
    login(app, RELATIVE, "relative").get(f"/plans/{plan_id}")
    login(app, OTHER_COORDINATOR, "coordinator").get(f"/plans/{plan_id}")
    patient = login(app, PATIENT, "patient")
    patient.get(f"/plans/{plan_id}")
    html = text(patient.get(f"/plans/{plan_id}/access-log?limit=3"))
    assert "<h1>Hvem har sett planen min</h1>" in html
    # newest first (this read is written as the page leaves: the next look shows it)
    items = re.findall(r"<strong>(.*?)</strong> (.*?)(?: <span|</p>)", html)
    assert items == [("Du", "leste planen"), ("Koordinator k2", "prøvde å lese planen"), ("Pårørende rel-b1", "leste planen")]
    assert '<span class="tag bad">ikke tillatt</span>' in html
    older = re.search(r'href="(/plans/[^"]+/access-log\?before=\d+)"', html)
    assert older, "no link to older entries"
    html = text(patient.get(older.group(1)))
    assert "Behandler clin-7, gjennom journalsystemet epr-1</strong> skrev inn endringer i planen" in html
    assert "Tilbake til det nyeste" in html
    html = text(patient.get(f"/plans/{plan_id}/access-log?limit=3"))
    assert "<strong>Du</strong> leste denne listen over hvem som har sett planen" in html
    switch_language(patient, "en")
    english = text(patient.get(f"/plans/{plan_id}/access-log?limit=50"))
    assert "<h1>Who has seen my plan</h1>" in english and "You</strong> read the plan" in english
    assert "Coordinator k2</strong> tried to read the plan" in english and "not allowed" in english
    assert patient.get(f"/plans/{plan_id}/access-log?before=nonsense").status_code == 422


def test_when_the_access_log_cannot_be_written_the_page_shows_nothing(app, plan_id, monkeypatch):
    client = login(app, PATIENT, "patient")
    log = app.extensions["careplan"].access_log

    def unavailable(entry):
        raise AccessLogUnavailable("down")

    kept = []
    monkeypatch.setattr(log, "append", unavailable)
    monkeypatch.setattr(log, "keep", kept.extend)
    response = client.get(f"/plans/{plan_id}")
    html = text(response)
    assert response.status_code == 503 and response.mimetype == "text/html"
    assert "Dette er ikke tilgjengelig akkurat nå." in html and "GOAL-MARK" not in html
    assert response.headers["Retry-After"] == "5"
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'; script-src 'self'")
    check_page(html)
    assert [(e.subject, e.action, e.result, e.status) for e in kept] == [(PATIENT, "read_plan", "unavailable", 503)]


# -- the timeline ---------------------------------------------------------------------------

def test_the_timeline_is_visual_grouped_by_month_newest_first_and_paged(app, client, writer, plan_id):
    patient = login(app, PATIENT, "patient")
    html = text(patient.get(f"/plans/{plan_id}/timeline"))
    # every kind has a colour class, an icon and a text label
    for kind, labels in (("words", ["Det som er viktig"]), ("goal", ["Mål"]), ("info", ["Informasjon"]),
                         ("people", ["Personer"]), ("meeting", ["Trekantsamtale", "Evaluering"]), ("plan", ["Planen"])):
        items = re.findall(rf'<li class="event k-{kind}">(.*?)</li>', html, re.S)
        assert items, kind
        for item in items:
            assert "<svg" in item and re.search(r'<p class="kind">([^<]+)</p>', item).group(1) in labels
    assert "Nådd: 1 av 2 mål." in html and 'class="fill w-50"' in html
    assert re.search(r'<h3 class="month">[A-ZÆØÅ][a-zæøå]+ \d{4}</h3>', html)
    for summary in ("Mål nådd: GOAL-MARK sove", "Mål endret: GOAL-MARK jobbe litt", "Informasjon gitt (muntlig) om rettigheter",
                    "Ny koordinator: COORD-MARK Kari", "Pårørende er lagt til i planen: Bjorn-MARK",
                    "Samtykke gitt: pårørende Bjorn-MARK kan se Mål", "Individuell plan opprettet i kommunen",
                    "Det som er viktig for meg: «WM-MARK å ha en jobb»", "Planen ble evaluert sammen med pasienten"):
        assert summary in html, summary
    # newest first: the consent (last posted) before the plan's opening
    assert html.index("Samtykke gitt") < html.index("Individuell plan opprettet i kommunen")
    first = text(patient.get(f"/plans/{plan_id}/timeline?limit=4"))
    older = re.search(r'href="(/plans/[^"]+/timeline\?before=(\d+))"', first)
    assert older and "Individuell plan opprettet i kommunen" not in first and first.count('class="event ') == 4
    second = text(patient.get(older.group(1)))
    assert "Tilbake til det nyeste" in second and "Samtykke gitt" not in second
    switch_language(patient, "en")
    english = text(patient.get(f"/plans/{plan_id}/timeline"))
    for summary in ("Goal achieved: GOAL-MARK sove", "Information given (orally) about rights",
                    "Individual plan opened in the municipal service", "Consent given for relative Bjorn-MARK to see: Goals"):
        assert summary in english, summary


def test_times_are_shown_in_oslo_time_in_the_readers_language(app, client, writer, plan_id):
    moment = (datetime.now(timezone.utc) - timedelta(days=3)).replace(hour=23, minute=30, second=0, microsecond=0)
    response = client.post(f"/v1/plans/{plan_id}/events", headers=writer, json={
        "type": "InformationGiven", "information_id": "i-late", "topic": "choices", "form": "written",
        "description": "sent om kvelden", "occurred_at": moment.isoformat()})
    assert response.status_code == 201
    local = moment.astimezone(ZoneInfo("Europe/Oslo"))
    patient = login(app, PATIENT, "patient")
    html = text(patient.get(f"/plans/{plan_id}"))
    assert f"{local.day}. " in html and f"kl. {local:%H:%M}" in html and "kl. 23:30" not in html
    switch_language(patient, "en")
    assert f"at {local:%H:%M}" in text(patient.get(f"/plans/{plan_id}"))


def test_user_text_is_escaped(app, client, writer, plan_id):
    script = "<script>alert('x')</script>"
    client.post(f"/v1/plans/{plan_id}/events", headers=writer,
                json={"type": "GoalSet", "goal_id": "g-x", "text": script, "expressed_by": "patient"})
    patient = login(app, PATIENT, "patient")
    post_form(patient, f"/plans/{plan_id}/what-matters", {"text": f"mine {script}"}, page=f"/plans/{plan_id}")
    for path in (f"/plans/{plan_id}", f"/plans/{plan_id}/timeline"):
        for reader in (patient, login(app, RELATIVE, "relative")):
            html = text(reader.get(path))
            assert "&lt;script&gt;" in html and "<script" not in html.lower()


# -- translations ---------------------------------------------------------------------------

def _catalogue(lang: str):
    with (PAGES / "translations" / lang / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return read_po(f, locale=lang)


def _used_msgids() -> dict[str, str]:
    """Every message id the pages use: in their templates and code (babel's extractor), and
    every summary template of the event type registry (both branches of each)."""
    found: dict[str, str] = {}
    method_map = [("**/templates/**.html", "jinja2"), ("**.py", "python")]
    options = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n", "newstyle_gettext": "true"}}
    for filename, lineno, message, _comments, _context in extract_from_dir(
            str(PAGES), method_map, options_map=options,
            keywords={"_": None, "gettext": None, "_l": None, "lazy_gettext": None}):
        found.setdefault(message if isinstance(message, str) else message[0], f"{filename}:{lineno}")

    class Fields:
        def __init__(self, shown: bool):
            self.shown = shown

        def __getattr__(self, name):
            if name == "scope":
                return ["goals"] if self.shown else None
            if name == "patient_took_part":
                return self.shown
            return "x" if self.shown else None

    for entry in event_types.BY_NAME.values():
        for shown in (True, False):
            found.setdefault(entry.summary(Fields(shown)).template, f"registry: {entry.name}")
    return found


def _placeholders(message: str) -> set[str]:
    return {a or b for a, b in re.findall(r"%\((\w+)\)s|\{(\w+)\}", message)}


def test_every_message_the_pages_use_is_translated_to_bokmal():
    catalogue = _catalogue("nb")
    used = _used_msgids()
    assert len(used) > 150
    missing = {m: where for m, where in used.items() if not (catalogue.get(m) and catalogue.get(m).string)}
    assert not missing, f"not in pages/translations/nb: {missing}"
    assert not [m.id for m in catalogue if m.id and m.id not in used], "entries no page uses any more"
    for message in catalogue:
        if message.id:
            assert not message.fuzzy, message.id
            assert _placeholders(message.id) == _placeholders(message.string), message.id
    # and the vocabulary: every code of the contract has its words
    for vocabulary, codes in (("scope", event_types.CONSENT_SCOPES), ("topic", event_types.INFORMATION_TOPICS),
                              ("form", event_types.INFORMATION_FORMS), ("service_level", event_types.SERVICE_LEVELS),
                              ("kind", event_types.PARTICIPANT_KINDS), ("close_reason", event_types.CLOSE_REASONS),
                              ("by_short", event_types.EXPRESSED_BY), ("expressed_by", event_types.EXPRESSED_BY),
                              ("level", event_types.SERVICE_LEVELS)):
        assert set(codes) <= set(present.VOCABULARY[vocabulary]), vocabulary
    english = _catalogue("en")
    for message in english:
        if message.id:
            assert message.id in used and _placeholders(message.id) == _placeholders(message.string)
