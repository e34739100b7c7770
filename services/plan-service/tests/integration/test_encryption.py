"""Encryption at rest: with PLAN_SERVICE_ENCRYPTION_KEY the SQLite file holds no plan content,
yet the service reads it back (after a restart, through snapshots); a wrong key or none fails
loudly. Without a key the same text is plainly in the file: the test can see it."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest
from eventsourcing.persistence import MapperDeserialisationError

from careplan_shared.auth import load_or_create_dev_key, mint_token
from plan_service.application.plans import PlanApplication
from plan_service.bootstrap import bootstrap
from plan_service.config import Config
from plan_service.web.app import create_app

pytestmark = pytest.mark.integration

ACTOR = {"role": "clinician", "id": "clin-1"}
KEY = "6lj4MqOpAOH2AbNd4LJwbYWUpOeL1EYDiClk/wT2HsQ="  # 32 bytes, test only
OTHER_KEY = "rTaLXEC9VyFASULiTOuo5Q=="  # 16 bytes, test only


@pytest.fixture
def marker() -> str:
    return f"ZQX-{uuid.uuid4()}"


@pytest.fixture
def make_app(tmp_path: Path):
    """make_app(key) -> a PlanApplication on one SQLite file (a restart: call it again)."""
    apps: list[PlanApplication] = []

    def make(key: str | None, encryption: str = "off") -> PlanApplication:
        """key None: plaintext (encryption "off"), or with "auto" the embedded default's key."""
        config = Config(data_dir=tmp_path, persistence="sqlite", snapshot_interval=2, encryption_key=key,
                        encryption=encryption)
        app = bootstrap(config).plans
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


def record_plan(app: PlanApplication, marker: str) -> uuid.UUID:
    plan_id = app.open_plan(patient_id="pat-synth-1", service_level="municipal", age_band="18-25",
                            actor=ACTOR).plan_id
    for i in range(3):  # snapshot interval 2: snapshots are taken too
        app.record(plan_id, [("WhatMattersRecorded", {"text": f"{marker} nr {i}", "language": "nb"})],
                   actor=ACTOR)
    return plan_id


def raw_bytes(tmp_path: Path) -> bytes:
    """Every byte of the store: the database file and its journal / WAL, if any."""
    files = sorted((tmp_path / "plan-service").glob("events.sqlite*"))
    assert files, "no SQLite file was written"
    return b"".join(f.read_bytes() for f in files)


def rows(tmp_path: Path, table: str) -> list[tuple]:
    with sqlite3.connect(tmp_path / "plan-service" / "events.sqlite") as db:
        return db.execute(f"SELECT * FROM {table}").fetchall()


def test_encrypted_store_holds_no_plan_content_and_reads_back(make_app, tmp_path, marker):
    app = make_app(KEY)
    plan_id = record_plan(app, marker)
    assert [w.text for w in app.get_plan(plan_id).what_matters] == [f"{marker} nr {i}" for i in range(3)]
    assert list(app.snapshots.get(plan_id)), "snapshots were stored"
    app.close()

    data = raw_bytes(tmp_path)
    assert marker.encode() not in data and b"pat-synth-1" not in data
    stored = rows(tmp_path, "stored_events")
    snapshots = rows(tmp_path, "stored_snapshots")
    assert len([r for r in stored if r[2].startswith("careplan.IndividualPlan.")]) == 4 and snapshots
    for *_, state in stored + snapshots:
        assert marker.encode() not in state and b"WhatMatters" not in state
        assert not _is_json(state), "state is ciphertext, not JSON"

    restarted = make_app(KEY)
    plan = restarted.get_plan(plan_id)
    assert plan.version == 4 and [w.text for w in plan.what_matters] == [f"{marker} nr {i}" for i in range(3)]
    snapshot = next(iter(restarted.snapshots.get(plan_id, desc=True, limit=1)))
    assert snapshot.originator_version == 4 - (4 % 2) and marker in str(snapshot.state)
    # the notification log (the feed, the relay) decrypts too
    assert [e.event_type for e in restarted.integration_events(0, 10)] == ["PlanOpened"] + ["WhatMattersRecorded"] * 3


def test_a_wrong_key_or_none_fails_clearly(make_app, marker):
    plan_id = record_plan(make_app(KEY), marker)
    with pytest.raises(MapperDeserialisationError, match="PLAN_SERVICE_ENCRYPTION_KEY is not the key"):
        make_app(OTHER_KEY).get_plan(plan_id)
    with pytest.raises(Exception) as without:  # ciphertext is not JSON: never read as plaintext
        make_app(None).get_plan(plan_id)
    assert marker not in str(without.value)


def test_a_key_on_an_unencrypted_store_fails_clearly(make_app, marker):
    plan_id = record_plan(make_app(None), marker)
    with pytest.raises(MapperDeserialisationError, match="unencrypted or damaged"):
        make_app(KEY).get_plan(plan_id)


def test_without_a_key_the_text_is_in_the_file(make_app, tmp_path, marker):
    """The control: the test's way of looking at the file does see plain content."""
    app = make_app(None)
    record_plan(app, marker)
    app.close()
    assert marker.encode() in raw_bytes(tmp_path)


def test_the_http_api_works_on_an_encrypted_store(tmp_path, marker):
    config = Config(data_dir=tmp_path, persistence="sqlite", snapshot_interval=2, encryption_key=KEY)
    app = create_app(config)
    client = app.test_client()
    key = load_or_create_dev_key(config.signing_key_file)
    auth = {"Authorization": "Bearer " + mint_token(key, "epr-1", "integration", on_behalf_of="clin-7")}
    r = client.post("/v1/plans", headers=auth,
                    json={"patient_id": "pat-synth-1", "service_level": "municipal", "age_band": "18-25"})
    assert r.status_code == 201, r.json
    plan_id = r.json["plan_id"]
    r = client.post(f"/v1/plans/{plan_id}/events", headers=auth, json=[
        {"type": "WhatMattersRecorded", "text": marker, "language": "nb"},
        {"type": "GoalSet", "goal_id": "g1", "text": f"{marker} goal", "expressed_by": "patient"}])
    assert r.status_code == 201, r.json
    for path in (f"/v1/plans/{plan_id}", f"/v1/plans/{plan_id}/timeline"):
        r = client.get(path, headers=auth)
        assert r.status_code == 200 and marker in r.get_data(as_text=True), path
    r = client.get("/v1/feed?after=0&limit=10", headers=auth)  # integration events carry no content
    assert r.status_code == 200 and len(r.json["items"]) == 3
    app.extensions["careplan"].plans.close()
    assert marker.encode() not in raw_bytes(tmp_path)


def _is_json(data: bytes) -> bool:
    """Ciphertext may begin with "{" by chance (1 in 256); it does not parse as JSON."""
    import json

    try:
        json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return False
    return True


# -- the embedded default: encrypted without any configuration ------------------------------


def test_the_embedded_default_is_encrypted_with_a_key_made_on_first_run(make_app, tmp_path, marker):
    app = make_app(None, encryption="auto")
    plan_id = record_plan(app, marker)
    app.close()
    key_file = tmp_path / "plan-service" / "encryption.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert marker.encode() not in raw_bytes(tmp_path) and b"pat-synth-1" not in raw_bytes(tmp_path)
    restarted = make_app(None, encryption="auto")  # the same key file: reads back
    assert [w.text for w in restarted.get_plan(plan_id).what_matters][-1] == f"{marker} nr 2"
    # the key is the one in the file: given explicitly, it reads the store too
    assert make_app(key_file.read_text().strip()).get_plan(plan_id).version == 4


def test_a_store_written_before_encryption_stays_readable(make_app, tmp_path, marker, caplog):
    plan_id = record_plan(make_app(None), marker)  # an older version: no encryption
    upgraded = make_app(None, encryption="auto")
    assert upgraded.get_plan(plan_id).version == 4
    assert not (tmp_path / "plan-service" / "encryption.key").exists()
    assert "written without encryption" in caplog.text


def test_the_embedded_default_keeps_its_files_private(tmp_path, marker):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    (data / "plan-service").mkdir(mode=0o755)
    app = create_app(Config(data_dir=data, persistence="sqlite"))
    client = app.test_client()
    key = load_or_create_dev_key(data / "dev-signing.key")
    writer = {"Authorization": "Bearer " + mint_token(key, "epr-1", "integration", on_behalf_of="clin-7")}
    opened = client.post("/v1/plans", headers=writer, json={
        "patient_id": "pat-files", "service_level": "municipal", "age_band": "18-25"})
    assert opened.status_code == 201
    client.get(f"/v1/plans/{opened.json['plan_id']}", headers=writer)
    folder = data / "plan-service"
    assert folder.stat().st_mode & 0o777 == 0o700
    files = sorted(folder.iterdir())
    assert {f.name for f in files} >= {"events.sqlite", "access-log.sqlite", "encryption.key"}
    assert {f.name for f in files} >= {"web-secret.key", "sessions"}  # the pages' secret and sessions
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {
        f.name: "0o700" if f.is_dir() else "0o600" for f in files}
    assert (data / "dev-signing.key").stat().st_mode & 0o777 == 0o600
