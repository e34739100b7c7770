"""The coordinator's inbox pages (Flask test client, in-memory store): login, the list in due
order with overdue and escalated marked, the filters, acknowledging by form (CSRF), one prompt's
page with the no-show strategy and the patient's wishes, isolation between coordinators, the
plan link, language, escaping, one h1, and the bokmål catalogue."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from babel.messages.extract import extract
from babel.messages.pofile import read_po
from jinja2.ext import babel_extract

import careplan_shared.pages
import notification_service.pages
from careplan_shared.config import ConfigError
from notification_service.adapters.memory_store import MemoryStore
from notification_service.application.service import ALL, Notifications
from notification_service.bootstrap import Services
from notification_service.config import Config
from notification_service.domain.prompts import PromptStatus, Reason
from notification_service.web.app import create_app

DAY = timedelta(days=1)
PAGES = Path(notification_service.pages.__file__).parent
CATALOGUES = (PAGES / "translations/nb/LC_MESSAGES/messages.po",
              Path(careplan_shared.pages.__file__).parent / "translations/nb/LC_MESSAGES/messages.po")
HOSTILE = '<script>alert("x")</script>'
PLAN_PAGES = "https://plan.example.no"


class Inbox:
    """An app on the in-memory store with synthetic plans; prompts come from plan events
    handled by the application (as the API tests make them)."""

    def __init__(self, tmp_path: Path, clock, stream, **config: str):
        self.config = Config(data_dir=tmp_path, **config)  # type: ignore[arg-type]
        self.clock = clock
        self.notifications = Notifications(MemoryStore(), self.config.rules, clock)
        self.app = create_app(self.config, Services(self.config, self.notifications, verifier=None))
        self.stream = stream
        # k1: a missed triangle meeting (today), an evaluation two days late, information given orally
        self.no_show_plan = self.feed(
            ("PlanOpened", dict(service_level="municipal", age_band="15-17", birth_date=None)),
            ("CoordinatorAssigned", dict(coordinator_id="k1", service_level="specialist")),
            ("TriangleMeetingScheduled", dict(meeting_id="m1", scheduled_for=clock.now() - timedelta(hours=2),
                                              place=f"Kafé {HOSTILE}", transport="Drosje", companion="Mor",
                                              no_show_strategy=f"Ring samme dag, så send SMS {HOSTILE}")),
            ("TriangleMeetingMissed", dict(meeting_id="m1")))
        self.other_plan = self.feed(
            ("PlanOpened", dict(service_level="municipal", age_band="26-64", birth_date=None)),
            ("CoordinatorAssigned", dict(coordinator_id="k1", service_level=None)),
            ("EvaluationScheduled", dict(evaluation_id="e1", scheduled_for=clock.now() - 2 * DAY)),
            ("InformationGiven", dict(information_id="i1", topic="rights", form="oral")))
        # k2: a plan of their own
        self.k2_plan = self.feed(
            ("PlanOpened", dict(service_level="municipal", age_band="26-64", birth_date=None)),
            ("CoordinatorAssigned", dict(coordinator_id="k2", service_level=None)),
            ("InformationGiven", dict(information_id="i9", topic="choices", form="oral")))

    def feed(self, *events: tuple[str, dict]) -> str:
        s = self.stream()
        for event_type, payload in events:
            wire = s.wire(event_type, at=self.clock.now(), **payload)
            self.notifications.handle("feed", 0, wire["position"], wire)
        return str(s.plan_id)

    def prompt(self, coordinator: str, reason: Reason):
        [found] = [p for p in self.notifications.inbox(coordinator, ALL) if p.rule == reason]
        return found

    def client(self, coordinator: str = "k1", lang: str | None = None):
        client = self.app.test_client()
        login = client.get("/login")
        assert login.status_code == 200
        response = client.post("/login/dev", data={"csrf_token": token(login), "subject": coordinator,
                                                   "role": "coordinator"})
        assert response.status_code == 302 and response.headers["Location"] == "/"
        if lang:
            response = client.post("/language", data={"csrf_token": token(client.get("/")), "lang": lang, "next": "/"})
            assert response.status_code == 302
        return client


def token(response) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', response.get_data(as_text=True)).group(1)


def cards(html: str) -> list[str]:
    return html.split('<li class="card">')[1:]


def text(response) -> str:
    return response.get_data(as_text=True)


@pytest.fixture
def inbox(tmp_path, clock, stream) -> Inbox:
    return Inbox(tmp_path, clock, stream, plan_pages_url=PLAN_PAGES)


def test_login_is_needed_and_only_coordinators_are_offered(inbox):
    client = inbox.app.test_client()
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"].endswith("/login")
    login = client.get("/login")
    page = text(login)
    assert "Kari Koordinator" in page and "Kim Koordinator" in page and "Ada Testesen" not in page
    refused = client.post("/login/dev", data={"csrf_token": token(login), "subject": "pat-a1", "role": "patient"})
    assert refused.status_code == 422
    assert client.get("/").status_code == 302


def test_the_inbox_lists_my_open_prompts_soonest_due_first_with_overdue_and_escalated_marked(inbox):
    inbox.clock.advance(DAY)  # past the end of the day of the missed meeting: follow-up overdue, then escalated
    assert inbox.notifications.tick()["escalated"] == 1
    client = inbox.client("k1", lang="en")
    response = client.get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    listed = cards(text(response))
    names = [re.search(r"<h2><a [^>]*>([^<]+)</a></h2>", card).group(1) for card in listed]
    assert names == ["Evaluation due", "Did not come to the triangle meeting", "Give the information in writing"]
    evaluation, no_show, information = listed
    assert "Overdue" in evaluation and "Escalated" not in evaluation
    assert '<span class="tag warn">Overdue</span>' in no_show
    assert '<span class="tag bad">Escalated: not acknowledged in time</span>' in no_show
    assert "Overdue" not in information and "Escalated" not in information
    assert "3 prompts" in text(response)
    # the due time in Europe/Oslo, in the chosen language (the missed meeting: by the end of that day)
    assert "Monday, March 2, 2026 at 11:59" in no_show and 'datetime="2026-03-02T22:59:59Z"' in no_show


def test_the_inbox_in_bokmal_by_default(inbox):
    page = text(inbox.client("k1").get("/"))
    assert '<html lang="nb">' in page and "<h1>Innboks</h1>" in page
    assert "Kom ikke til trekantsamtalen" in page and "Over fristen" in page and "Kvitter ut" in page
    assert "mandag 2. mars 2026 kl. 23:59" in page  # the follow-up is due by the end of that day
    assert "Alle årsaker" in page and "3 påminnelser" in page


def test_english_after_the_language_switch(inbox):
    client = inbox.client("k1")
    assert "<h1>Innboks</h1>" in text(client.get("/"))
    switched = client.post("/language", data={"csrf_token": token(client.get("/")), "lang": "en", "next": "/"})
    assert switched.status_code == 302
    page = text(client.get("/"))
    assert '<html lang="en">' in page and "<h1>Inbox</h1>" in page and "Acknowledge" in page
    assert "Innboks" not in page and "Kvitter ut" not in page


def test_filter_by_reason(inbox):
    client = inbox.client("k1", lang="en")
    response = client.get("/?status=open&reason=no_show_follow_up")
    page = text(response)
    [card] = cards(page)
    assert "Did not come to the triangle meeting" in card
    assert '<option value="no_show_follow_up" selected>' in page
    assert '<label for="filter-reason">' in page and 'id="filter-reason" name="reason"' in page
    assert '<form method="get" action="/"' in page
    # every reason is offered in plain words
    for reason in Reason:
        assert f'<option value="{reason.value}"' in page
    assert cards(text(client.get("/?reason=consent_expiring"))) == []
    assert "No prompts match what you chose." in text(client.get("/?reason=consent_expiring"))
    assert client.get("/?reason=nonsense").status_code == 400
    assert client.get("/?status=closed").status_code == 400


def test_filter_by_status_shows_the_acknowledged_and_the_done_ones(inbox):
    client = inbox.client("k1", lang="en")
    done = cards(text(client.get("/?status=resolved")))
    # the triangle-meeting suggestion closed by itself when the meeting was set
    assert len(done) == 1 and "Suggest a triangle meeting" in done[0] and "Done (the plan shows it was dealt with)" in done[0]
    assert "Acknowledge" not in done[0]
    assert len(cards(text(client.get("/?status=all")))) == 4
    assert cards(text(client.get("/?status=acknowledged"))) == []


def test_acknowledge_by_form(inbox):
    prompt = inbox.prompt("k1", Reason.NO_SHOW_FOLLOW_UP)
    client = inbox.client("k1", lang="en")
    form_page = client.get("/")
    assert f'action="/prompts/{prompt.id}/acknowledge"' in text(form_page)
    response = client.post(f"/prompts/{prompt.id}/acknowledge", data={"csrf_token": token(form_page), "next": "/"})
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert inbox.notifications.prompt_for(prompt.id, "k1").status == PromptStatus.ACKNOWLEDGED
    after = text(client.get("/"))
    assert "Acknowledged: Did not come to the triangle meeting. You take it from here." in after
    assert "Did not come to the triangle meeting</a>" not in after  # no longer among the open ones
    [acknowledged] = cards(text(client.get("/?status=acknowledged")))
    assert prompt.id in acknowledged and "Acknowledge<" not in acknowledged
    # again: harmless (the same use case as the API); from the prompt's page, back to it
    again = client.post(f"/prompts/{prompt.id}/acknowledge",
                        data={"csrf_token": token(form_page), "next": f"/prompts/{prompt.id}"})
    assert again.status_code == 302 and again.headers["Location"] == f"/prompts/{prompt.id}"
    # never on to another site
    away = client.post(f"/prompts/{prompt.id}/acknowledge",
                       data={"csrf_token": token(form_page), "next": "https://evil.example/"})
    assert away.headers["Location"] == "/"


def test_acknowledge_without_a_csrf_token_is_400_and_changes_nothing(inbox):
    prompt = inbox.prompt("k1", Reason.NO_SHOW_FOLLOW_UP)
    client = inbox.client("k1")
    for data in ({}, {"csrf_token": "forged"}):
        response = client.post(f"/prompts/{prompt.id}/acknowledge", data=data)
        assert response.status_code == 400 and response.mimetype == "text/html"
        assert text(response).count("<h1") == 1
    assert inbox.notifications.prompt_for(prompt.id, "k1").status == PromptStatus.OPEN


def test_a_prompt_that_closed_by_itself_cannot_be_acknowledged(inbox):
    closed = inbox.prompt("k1", Reason.TRIANGLE_MEETING_SUGGESTED)
    client = inbox.client("k1")
    response = client.post(f"/prompts/{closed.id}/acknowledge", data={"csrf_token": token(client.get("/"))})
    assert response.status_code == 409 and "planen viser at det er gjort" in text(response)
    assert inbox.notifications.prompt_for(closed.id, "k1").status == PromptStatus.RESOLVED


def test_another_coordinator_neither_sees_nor_acknowledges_it(inbox):
    prompt = inbox.prompt("k1", Reason.NO_SHOW_FOLLOW_UP)
    k2 = inbox.client("k2", lang="en")
    page = text(k2.get("/?status=all"))
    [own] = cards(page)
    assert "Give the information in writing" in own and inbox.k2_plan in own
    assert prompt.id not in page and inbox.no_show_plan not in page and "triangle meeting" not in own
    seen = k2.get(f"/prompts/{prompt.id}")
    assert seen.status_code == 404
    assert "Ring samme dag" not in text(seen) and "Kafé" not in text(seen) and inbox.no_show_plan not in text(seen)
    tried = k2.post(f"/prompts/{prompt.id}/acknowledge", data={"csrf_token": token(k2.get("/")), "next": "/"})
    assert tried.status_code == 404
    assert inbox.notifications.prompt_for(prompt.id, "k1").status == PromptStatus.OPEN
    assert k2.get("/prompts/no-such-prompt").status_code == 404


def test_the_missed_meeting_page_shows_the_strategy_and_the_wishes(inbox):
    prompt = inbox.prompt("k1", Reason.NO_SHOW_FOLLOW_UP)
    response = inbox.client("k1", lang="en").get(f"/prompts/{prompt.id}")
    assert response.status_code == 200
    page = text(response)
    assert "<h1>Did not come to the triangle meeting</h1>" in page
    assert "Follow up today, the way you agreed in advance." in page
    assert "Agreed in advance: if the patient does not come" in page and "Ring samme dag, så send SMS" in page
    wishes = page[page.index("The patient's wishes for the meeting"):]
    assert "<dt>Place</dt><dd>Kafé " in wishes
    assert "<dt>Transport</dt><dd>Drosje</dd>" in wishes and "<dt>Someone to come along</dt><dd>Mor</dd>" in wishes
    # the time the meeting was set for (from the plan's view in the store), in Europe/Oslo
    assert '<dt>Time</dt><dd><time datetime="2026-03-02T07:00:00Z">Monday, March 2, 2026 at 8:00' in wishes
    assert "The patient has missed this meeting 1 time." in page
    assert "<dt>Status</dt><dd>Open</dd>" in page and "Follow up by" in page
    assert f'action="/prompts/{prompt.id}/acknowledge"' in page


def test_the_missed_meeting_page_in_bokmal(inbox):
    prompt = inbox.prompt("k1", Reason.NO_SHOW_FOLLOW_UP)
    page = text(inbox.client("k1").get(f"/prompts/{prompt.id}"))
    assert "Avtalt på forhånd: hvis pasienten ikke kommer" in page and "Pasientens ønsker for møtet" in page
    assert "<dt>Sted</dt>" in page and "<dt>Noen som blir med</dt><dd>Mor</dd>" in page
    assert "mandag 2. mars 2026 kl. 08:00" in page


def test_other_prompts_pages_say_what_they_are_about(inbox):
    client = inbox.client("k1", lang="en")
    information = text(client.get(f"/prompts/{inbox.prompt('k1', Reason.WRITTEN_INFORMATION_DUE).id}"))
    assert "<dt>Topic</dt><dd>The patient&#39;s rights</dd>" in information
    assert "Give it in writing too." in information and "Agreed in advance" not in information
    evaluation = text(client.get(f"/prompts/{inbox.prompt('k1', Reason.EVALUATION_DUE).id}"))
    assert "Evaluation planned for" in evaluation and "Overdue" in evaluation


def test_each_prompt_links_to_the_plans_page(inbox):
    client = inbox.client("k1")
    prompt = inbox.prompt("k1", Reason.NO_SHOW_FOLLOW_UP)
    link = f'href="{PLAN_PAGES}/plans/{inbox.no_show_plan}"'
    assert link in text(client.get("/"))
    assert link in text(client.get(f"/prompts/{prompt.id}"))
    assert f'href="{PLAN_PAGES}/plans/{inbox.other_plan}"' in text(client.get("/"))


def test_the_plan_link_defaults_to_plan_service_url(tmp_path, clock, stream):
    inbox = Inbox(tmp_path, clock, stream, plan_service_url="http://127.0.0.1:9081")
    assert f'href="http://127.0.0.1:9081/plans/{inbox.no_show_plan}"' in text(inbox.client("k1").get("/"))


def test_the_plan_pages_url_setting(tmp_path):
    base = {"CAREPLAN_DATA_DIR": str(tmp_path), "PLAN_SERVICE_URL": "http://plan-service:8081"}
    assert Config.from_env(base).plan_pages_url is None  # the pages then link to PLAN_SERVICE_URL
    configured = Config.from_env({**base, "NOTIFICATION_PLAN_PAGES_URL": "https://plan.example.no/"})
    assert configured.plan_pages_url == "https://plan.example.no"
    for bad in ("javascript:alert(1)", "plan.example.no", "ftp://plan.example.no"):
        with pytest.raises(ConfigError, match="NOTIFICATION_PLAN_PAGES_URL"):
            Config.from_env({**base, "NOTIFICATION_PLAN_PAGES_URL": bad})


def test_a_time_at_the_end_of_time_is_shown_without_failing(inbox):
    inbox.feed(("PlanOpened", dict(service_level="municipal", age_band="26-64", birth_date=None)),
               ("CoordinatorAssigned", dict(coordinator_id="k2", service_level=None)),
               ("EvaluationScheduled", dict(evaluation_id="e1", scheduled_for=inbox.clock.now().replace(
                   year=9999, month=12, day=31, hour=23, minute=30))))
    inbox.clock.set(inbox.clock.now().replace(year=9999, month=12, day=31, hour=23, minute=45))
    inbox.notifications.tick()
    page = text(inbox.client("k2").get("/?reason=evaluation_due"))
    assert "9999-12-31T23:30:00Z" in page and len(cards(page)) == 1


def test_text_from_the_plan_is_escaped(inbox):
    prompt = inbox.prompt("k1", Reason.NO_SHOW_FOLLOW_UP)
    page = text(inbox.client("k1").get(f"/prompts/{prompt.id}"))
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page


@pytest.mark.parametrize("path", ["/", "/?status=all", "/?reason=consent_expiring", "/prompts/{no_show}",
                                  "/prompts/{evaluation}", "/prompts/nothing-here"])
def test_one_h1_landmarks_and_no_inline_script_or_style(inbox, path):
    ids = {"no_show": inbox.prompt("k1", Reason.NO_SHOW_FOLLOW_UP).id,
           "evaluation": inbox.prompt("k1", Reason.EVALUATION_DUE).id}
    response = inbox.client("k1").get(path.format(**ids))
    page = text(response)
    assert page.count("<h1") == 1
    assert '<main id="main"' in page and "<header" in page and "<nav" in page and "<footer" in page
    assert "style=" not in page and "<script" not in page and "<style" not in page
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]
    for field in re.findall(r'<(?:select|input) [^>]*id="([^"]+)"', page):
        assert f'<label for="{field}">' in page


def test_the_menu_links_to_the_inbox_and_the_stylesheet_is_served(inbox):
    client = inbox.client("k1")
    page = text(client.get("/"))
    assert '<li><a href="/">Innboks</a></li>' in page
    assert 'href="/assets/inbox/inbox.css"' in page
    css = client.get("/assets/inbox/inbox.css")
    assert css.status_code == 200 and css.mimetype == "text/css"


def test_the_templates_mark_nothing_safe():
    for template in (PAGES / "templates").rglob("*.html"):
        source = template.read_text()
        assert "|safe" not in source.replace(" ", "") and "Markup" not in source and "autoescape false" not in source
        assert "style=" not in source and "<script" not in source


def _used_messages() -> set[str | tuple[str, str]]:
    keywords = {"_": None, "gettext": None, "lazy_gettext": None, "ngettext": (1, 2)}
    used: set[str | tuple[str, str]] = set()
    sources = [(path, "python") for path in PAGES.rglob("*.py")]
    sources += [(path, babel_extract) for path in (PAGES / "templates").rglob("*.html")]
    for path, method in sources:
        with path.open("rb") as f:
            for _line, message, _comments, _context in extract(method, f, keywords=keywords):
                used.add(message if isinstance(message, str) else tuple(message))
    return used


def _catalogue(path: Path):
    with path.open("rb") as f:
        return read_po(f, locale="nb")


def test_every_message_the_pages_use_is_translated_into_bokmal():
    used = _used_messages()
    assert "Inbox" in used and ("%(num)d prompt", "%(num)d prompts") in used and len(used) > 60
    translated: dict[str, object] = {}
    for path in CATALOGUES:
        for message in _catalogue(path):
            if message.id:
                translated.setdefault(message.id[0] if isinstance(message.id, tuple) else message.id, message.string)
    missing = [m for m in used if (m[0] if isinstance(m, tuple) else m) not in translated]
    assert missing == []
    for message in used:
        string = translated[message[0] if isinstance(message, tuple) else message]
        assert all(string) if isinstance(string, tuple) else string, f"untranslated: {message}"


def test_the_catalogue_is_complete_and_keeps_the_placeholders():
    catalogue = _catalogue(CATALOGUES[0])
    messages = [m for m in catalogue if m.id]
    assert len(messages) > 60
    for message in messages:
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(strings), f"untranslated: {ids[0]}"
        wanted = set(re.findall(r"%\(\w+\)[sd]", ids[0]))
        for string in strings:
            assert set(re.findall(r"%\(\w+\)[sd]", string)) == wanted, ids[0]
    # nothing in the catalogue that the pages do not use
    used = {m[0] if isinstance(m, tuple) else m for m in _used_messages()}
    assert {m.id[0] if isinstance(m.id, tuple) else m.id for m in messages} <= used
