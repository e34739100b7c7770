"""No read without its access-log entry (pasientjournalloven § 18): with the access log's store
down, a read answers 503 problem+json and shows nothing of the plan, /readyz says why; once the
store is back, nothing is lost: every read that was served and every refused attempt is there."""

from __future__ import annotations

import sqlite3
import time
import uuid

import pytest

from careplan_shared.auth import load_or_create_dev_key, mint_token
from plan_service.config import Config
from plan_service.web.app import create_app

pytestmark = pytest.mark.integration

MARKER = "ZQX-what-matters-to-me"


class SQLiteOutage:
    def __init__(self, path):
        self.path = path

    def stop(self) -> None:  # the table disappears from under the writer
        with sqlite3.connect(self.path) as db:
            db.execute("ALTER TABLE careplan_access_log RENAME TO careplan_access_log_away")

    def start(self) -> None:
        with sqlite3.connect(self.path) as db:
            db.execute("ALTER TABLE careplan_access_log_away RENAME TO careplan_access_log")


class PostgresOutage:
    def __init__(self, env):
        import psycopg

        self.connect = lambda: psycopg.connect(
            host=env["POSTGRES_HOST"], port=env["POSTGRES_PORT"], user=env["POSTGRES_USER"],
            password=env["POSTGRES_PASSWORD"], dbname=env["POSTGRES_DBNAME"], autocommit=True,
            options=f"-c search_path={env['POSTGRES_SCHEMA']}")

    def stop(self) -> None:
        with self.connect() as db:
            db.execute("ALTER TABLE careplan_access_log RENAME TO careplan_access_log_away")

    def start(self) -> None:
        with self.connect() as db:
            db.execute("ALTER TABLE careplan_access_log_away RENAME TO careplan_access_log")


@pytest.fixture(params=["sqlite", "postgres"])
def stack(request, tmp_path):
    if request.param == "sqlite":
        config = Config(data_dir=tmp_path, persistence="sqlite")
        outage = SQLiteOutage(config.sqlite_file.with_name("access-log.sqlite"))
    else:
        env = request.getfixturevalue("postgres_env")
        config = Config(data_dir=tmp_path, persistence="postgres", postgres=env)
        outage = PostgresOutage(env)
    app = create_app(config)
    app.extensions["careplan"].access_log.timeout = 2.0
    key = load_or_create_dev_key(config.signing_key_file)

    def auth(role: str, sub: str, **kw) -> dict[str, str]:
        return {"Authorization": "Bearer " + mint_token(key, sub, role, **kw)}

    yield app, app.test_client(), auth, outage
    app.extensions["careplan"].plans.close()


def test_a_read_without_its_log_entry_is_refused_and_nothing_is_lost(stack):
    app, client, auth, outage = stack
    writer, patient = auth("integration", "epr-1", on_behalf_of="clin-7"), auth("patient", "pat-log")
    plan_id = client.post("/v1/plans", headers=writer, json={
        "patient_id": "pat-log", "service_level": "municipal", "age_band": "18-25"}).json["plan_id"]
    assert client.post(f"/v1/plans/{plan_id}/events", headers=writer,
                       json={"type": "WhatMattersRecorded", "text": MARKER}).status_code == 201
    assert MARKER in client.get(f"/v1/plans/{plan_id}", headers=writer).get_data(as_text=True)

    outage.stop()
    for path in (f"/v1/plans/{plan_id}", f"/v1/plans/{plan_id}/timeline"):
        refused = client.get(path, headers=auth("clinician", "clin-7"))  # the opener: allowed
        assert refused.status_code == 503, refused.get_data(as_text=True)
        assert refused.mimetype == "application/problem+json"
        assert MARKER not in refused.get_data(as_text=True) and plan_id not in refused.get_data(as_text=True)
    denied = client.get(f"/v1/plans/{plan_id}", headers=auth("coordinator", "koord-x"))
    assert denied.status_code == 403  # a refusal shows nothing anyway: answered, logged later
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["checks"]["access_log"] == "unreachable"
    assert ready.json["checks"]["access_log_writer"]["failed_writes"] >= 1

    outage.start()
    log = app.extensions["careplan"].access_log
    for _ in range(50):  # the writer retries what it kept, about once a second
        if client.get("/readyz").status_code == 200 and log.status()["kept_for_retry"] == 0:
            break
        time.sleep(0.1)
    entries = client.get(f"/v1/plans/{plan_id}/access-log", headers=patient).json["items"]
    seen = [(e["who"], e["action"], e["result"]) for e in entries]
    assert seen.count(("clinician clin-7", "read_plan", "unavailable")) == 1
    assert seen.count(("clinician clin-7", "read_timeline", "unavailable")) == 1
    assert ("coordinator koord-x", "read_plan", "denied") in seen
    assert ("clinician clin-7 (through the EPR system epr-1)", "read_plan", "allowed") in seen
    assert not any(r == "allowed" and w == "clinician clin-7" for w, _, r in seen)  # nothing was shown
    assert {e["what"] for e in entries if e["result"] == "unavailable"} == {
        "tried to read the plan: nothing was shown, the access log could not be written",
        "tried to read the plan's timeline: nothing was shown, the access log could not be written"}
    # and reads work again, each with its entry
    assert MARKER in client.get(f"/v1/plans/{plan_id}", headers=writer).get_data(as_text=True)


def test_a_full_queue_refuses_instead_of_growing(stack):
    from plan_service.adapters.access_log import AccessEntry, AccessLogUnavailable

    app, client, auth, outage = stack
    writer = app.extensions["careplan"].access_log._writer
    writer.max_pending = 0
    with pytest.raises(AccessLogUnavailable):
        app.extensions["careplan"].access_log.append(
            AccessEntry("2026-01-01T00:00:00.000+00:00", str(uuid.uuid4()), "x", "patient", None,
                        "read_plan", "allowed", 200))
