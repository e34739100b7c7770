"""The store at rest: plan content encrypted (and still shown to the coordinator), files 0600 in
a 0700 folder, an older store upgraded without losing anything."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from careplan_shared.auth import load_or_create_dev_key, mint_token
from careplan_shared.config import ConfigError
from notification_service.adapters.crypto import Cipher, StoreUnreadable, load_or_create_key
from notification_service.adapters.store import SQLiteStore, from_ts, ts
from notification_service.application.service import Notifications
from notification_service.bootstrap import bootstrap
from notification_service.config import Config
from notification_service.domain.rules import Settings
from notification_service.web.app import create_app

MARKERS = dict(place="MARKER-PLACE-Tøyen", transport="MARKER-TRANSPORT-taxi", companion="MARKER-COMPANION-mor",
               no_show_strategy="MARKER-STRATEGY-ring-samme-dag")


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def plan_with_missed_meeting(s, clock):
    return [s.wire("PlanOpened", service_level="municipal", age_band="15-17", birth_date=None),
            s.wire("CoordinatorAssigned", coordinator_id="k1", service_level="specialist"),
            s.wire("TriangleMeetingScheduled", meeting_id="m1", scheduled_for=clock.now(), **MARKERS),
            s.wire("TriangleMeetingMissed", meeting_id="m1")]


def everything_stored(folder: Path) -> str:
    """Every table's every value (through sqlite3 itself), plus the raw bytes of the files."""
    with sqlite3.connect(folder / "prompts.sqlite") as db:
        dump = "\n".join(db.iterdump())
    raw = b"".join(p.read_bytes() for p in folder.iterdir() if p.name.startswith("prompts.sqlite"))
    return dump + raw.decode("utf-8", "replace")


def test_plan_content_is_encrypted_and_the_inbox_still_shows_it(tmp_path, clock, stream):
    config = Config(data_dir=tmp_path)
    services = bootstrap(config, clock=clock, with_workers=False)
    s = stream()
    for e in plan_with_missed_meeting(s, clock):
        services.notifications.handle("feed", 0, e["position"], e)
    poison = dict(plan_with_missed_meeting(stream(), clock)[2], event_type="NoSuchType")
    services.notifications.handle("feed", 0, 10**6, poison)  # a dead letter holding content too
    client = create_app(config, services).test_client()
    key = load_or_create_dev_key(config.signing_key_file)
    response = client.get("/v1/prompts", headers={"Authorization": "Bearer " + mint_token(key, "k1", "coordinator")})
    [prompt] = response.json["items"]
    assert {k: prompt["details"][k] for k in MARKERS} == MARKERS
    stored = everything_stored(tmp_path / "notification-service")
    for marker in MARKERS.values():
        assert marker not in stored and marker.encode("utf-8").hex() not in stored
    assert "enc:v1:" in stored


def test_rows_written_before_encryption_are_still_read_and_encrypted_when_rewritten(tmp_path, clock, stream):
    path = tmp_path / "prompts.sqlite"
    old = Notifications(SQLiteStore(path), Settings(), clock)  # an older version: plaintext
    s = stream()
    events = plan_with_missed_meeting(s, clock)
    for e in events[:3]:
        old.handle("feed", 0, e["position"], e)
    upgraded = Notifications(SQLiteStore(path, Cipher(bytes(range(16)))), Settings(), clock)
    upgraded.handle("feed", 0, events[3]["position"], events[3])
    [prompt] = upgraded.inbox("k1")
    assert prompt.details["no_show_strategy"] == MARKERS["no_show_strategy"]
    with sqlite3.connect(path) as db:
        [(state,)] = db.execute("SELECT state FROM plan_views").fetchall()
    assert state.startswith("enc:v1:")
    with pytest.raises(StoreUnreadable):  # and the key is needed from now on
        SQLiteStore(path)


def test_an_older_store_gets_the_dead_letter_status_columns(tmp_path, stream):
    path = tmp_path / "prompts.sqlite"
    with sqlite3.connect(path) as db:  # the dead_letters table as it first shipped
        db.execute("CREATE TABLE dead_letters (id TEXT PRIMARY KEY, source TEXT NOT NULL, part INTEGER NOT NULL, "
                   "position BIGINT NOT NULL, event_id TEXT, reason TEXT NOT NULL, payload TEXT NOT NULL, "
                   "created_at TEXT NOT NULL)")
        db.execute("INSERT INTO dead_letters VALUES ('d1', 'feed', 0, 7, NULL, 'undecodable: x', 'not json', "
                   "'2026-03-01T00:00:00.000000+00:00')")
    store = SQLiteStore(path, Cipher(bytes(range(32))))
    SQLiteStore(path, Cipher(bytes(range(32))))  # opening it again changes nothing
    with store.transaction() as tx:
        assert {"status", "resolved_at"} <= tx.columns("dead_letters")
        assert tx.count_dead_letters() == 1
        [letter] = tx.open_dead_letters(10)
    assert letter["payload"] == "not json" and letter["position"] == 7


def test_the_default_store_is_private(tmp_path, umask_022):
    folder = tmp_path / "notification-service"
    folder.mkdir(mode=0o755)  # as an older version left it: 0755 folder, 0644 file
    (folder / "prompts.sqlite").touch(mode=0o644)
    (folder / "prompts.sqlite").chmod(0o644)
    services = bootstrap(Config(data_dir=tmp_path), with_workers=False)
    store = services.notifications.store
    assert mode(folder) == 0o700
    assert mode(folder / "prompts.sqlite") == 0o600
    assert mode(folder / "store-encryption.key") == 0o600
    db = store._connect()  # while a connection is open, the WAL and shared-memory files exist
    try:
        db.execute("INSERT INTO store_meta (name, value) VALUES ('probe', 'x')")
        for name in ("prompts.sqlite-wal", "prompts.sqlite-shm"):
            assert mode(folder / name) == 0o600, name
    finally:
        db.close()


def test_a_folder_the_store_creates_is_private_one_it_was_given_is_left_alone(tmp_path, umask_022):
    SQLiteStore(tmp_path / "new" / "deeper" / "p.sqlite")
    assert mode(tmp_path / "new" / "deeper") == 0o700
    given = tmp_path / "shared"
    given.mkdir(mode=0o755)
    SQLiteStore(given / "p.sqlite")
    assert mode(given) == 0o755 and mode(given / "p.sqlite") == 0o600


def test_racing_processes_make_one_key(tmp_path):
    path = tmp_path / "keys" / "store-encryption.key"
    code = ("import sys; from pathlib import Path; from notification_service.adapters.crypto import "
            "load_or_create_key; print(load_or_create_key(Path(sys.argv[1])).hex())")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
             for _ in range(8)]
    keys = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(keys) == 1
    key = keys.pop()
    assert len(bytes.fromhex(key)) == 32
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["store-encryption.key"]  # no temporary files left
    assert load_or_create_key(path) == base64.b64decode(path.read_text()) == bytes.fromhex(key)


def test_the_key_from_the_environment(tmp_path):
    key = base64.b64encode(bytes(range(24))).decode()
    assert Config.from_env({"NOTIFICATION_ENCRYPTION_KEY": key}).encryption_key == key
    (tmp_path / "k").write_text(key + "\n")
    assert Config.from_env({"NOTIFICATION_ENCRYPTION_KEY_FILE": str(tmp_path / "k")}).encryption_key == key
    assert key not in repr(Config.from_env({"NOTIFICATION_ENCRYPTION_KEY": key}))
    for env, name in [({"NOTIFICATION_ENCRYPTION_KEY": "not base64!"}, "NOTIFICATION_ENCRYPTION_KEY"),
                      ({"NOTIFICATION_ENCRYPTION_KEY": base64.b64encode(b"short").decode()},
                       "NOTIFICATION_ENCRYPTION_KEY"),
                      ({"NOTIFICATION_ENCRYPTION_KEY_FILE": str(tmp_path / "missing")},
                       "NOTIFICATION_ENCRYPTION_KEY_FILE"),
                      ({"NOTIFICATION_ENCRYPTION_KEY": key, "NOTIFICATION_ENCRYPTION_KEY_FILE": str(tmp_path / "k")},
                       "not both")]:
        with pytest.raises(ConfigError, match=name) as error:
            Config.from_env(env)
        assert "short" not in str(error.value)
    services = bootstrap(Config(data_dir=tmp_path, encryption_key=key), with_workers=False)
    assert not (tmp_path / "notification-service" / "store-encryption.key").exists()
    with pytest.raises(StoreUnreadable):  # the store remembers which key wrote it
        bootstrap(Config(data_dir=tmp_path), with_workers=False)
    assert services.notifications.inbox("k1") == []


def test_a_sealed_value_does_not_decrypt_in_another_row(tmp_path, clock, stream):
    path = tmp_path / "prompts.sqlite"
    service = Notifications(SQLiteStore(path, Cipher(bytes(range(32)))), Settings(), clock)
    for s in (stream(), stream()):
        for e in plan_with_missed_meeting(s, clock):
            service.handle("feed", 0, e["position"], e)
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT plan_id, state FROM plan_views").fetchall()
        db.execute("UPDATE plan_views SET state = ? WHERE plan_id = ?", (rows[1][1], rows[0][0]))
    with service.store.transaction() as tx, pytest.raises(StoreUnreadable):
        tx.load_view(rows[0][0])


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00.000000+00:00", "9999-12-31T23:59:59.999999+00:00"])
def test_times_keep_one_width_and_read_back(text):
    moment = from_ts(text)
    assert ts(moment) == text and from_ts(ts(moment)) == moment
    assert from_ts("1-06-30T00:00:00.000000+00:00") == from_ts("0001-06-30T00:00:00.000000+00:00")  # older rows
    assert json.dumps(ts(moment))
