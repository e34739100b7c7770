"""Several instances of each service, as real processes on the real PostgreSQL and Kafka
(issue 13, item 1; the README's "Production shape" says how to run them):

1. two plan-service processes (gunicorn, 2 and 1 workers) on one PostgreSQL schema, many
   threads writing to the same three plans through both, with and without If-Match: every
   answer is 201, 409 or 412, and the store holds each 201's events exactly once, in versions
   without gaps (the timeline by version, the notification log by event_id);
2. two plan-service processes with the inline relay: exactly one leads and publishes (each
   event once on the topic); the leader is SIGKILLed while writes go on through the other,
   which takes the lead, and every committed event reaches the topic (a re-send carries the
   same event_id and the same message);
3. two notification-service processes in one consumer group on a 6-partition topic and one
   PostgreSQL prompt store: the second joins while the first works through a backlog (a
   rebalance mid-batch), then one is SIGKILLed mid-stream; the survivor takes over its
   partitions, and every expected prompt exists exactly once, every plan view has every event.

The takeover times are printed (run with -s): they go into the release note."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import requests

from careplan_shared.auth import load_or_create_dev_key, mint_token
from careplan_testing import read_topic, require_infra, wait_for

pytestmark = pytest.mark.e2e

STORE_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # base64 of bytes 0..31: a test key


def _auth(data_dir: Path, role: str = "integration", sub: str = "epr-1", **kw: Any) -> dict[str, str]:
    key = load_or_create_dev_key(data_dir / "dev-signing.key")
    return {"Authorization": "Bearer " + mint_token(key, sub, role, **kw)}


def _writer(data_dir: Path) -> dict[str, str]:
    return _auth(data_dir, "integration", "epr-1", on_behalf_of="clin-7")


def _plan_env(postgres_env: dict[str, str], **extra: str) -> dict[str, str]:
    return {"PLAN_SERVICE_PERSISTENCE": "postgres", **postgres_env, **extra}


def _open_plan(url: str, auth: dict[str, str]) -> str:
    r = requests.post(f"{url}/v1/plans", headers=auth, timeout=30, json={
        "patient_id": f"pat-synth-{uuid.uuid4().hex[:6]}", "service_level": "municipal", "age_band": "18-25"})
    assert r.status_code == 201, r.text
    return r.json()["plan_id"]


def _feed(url: str, auth: dict[str, str]) -> list[dict[str, Any]]:
    """The whole notification log, as the feed gives it."""
    items: list[dict[str, Any]] = []
    while True:
        r = requests.get(f"{url}/v1/feed", params={"after": items[-1]["position"] if items else 0, "limit": 1000},
                         headers=auth, timeout=30)
        assert r.status_code == 200, r.text
        page = r.json()["items"]
        if not page:
            return items
        items += page


def _timeline(url: str, auth: dict[str, str], plan_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    before = None
    while True:
        params: dict[str, Any] = {"limit": 200, **({"before": before} if before else {})}
        r = requests.get(f"{url}/v1/plans/{plan_id}/timeline", params=params, headers=auth, timeout=30)
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        before = r.json()["next_before"]
        if before is None:
            return items


# -- 1. two plan-service processes, one schema -----------------------------------------------

def test_two_plan_services_on_one_schema_answer_201_409_or_412_and_lose_no_update(
        start_plan_service, postgres_env, data_dir):
    env = _plan_env(postgres_env, KAFKA_BOOTSTRAP_SERVERS="", PLAN_SERVICE_RELAY="off", LOG_LEVEL="WARNING",
                    PLAN_SERVICE_THREADS="4")
    servers = [start_plan_service(PLAN_SERVICE_WORKERS="2", **env), start_plan_service(PLAN_SERVICE_WORKERS="1", **env)]
    urls = [s.url for s in servers]
    auth = _writer(data_dir)
    plans = [_open_plan(urls[i % 2], auth) for i in range(3)]
    threads_count, requests_each = 8, 24
    answers: list[tuple[int, str, list[str], Any, bool]] = []  # status, plan, texts, body, with If-Match
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads_count)

    def write(n: int) -> None:
        session = requests.Session()
        known: dict[str, int] = {}  # the plan version this thread last saw
        try:
            barrier.wait()
            for i in range(requests_each):
                plan_id = plans[(n + i) % len(plans)]
                url = urls[(n + i // 3) % 2]
                texts = [f"w{n}-{i}-{k}" for k in range(2 if i % 3 == 0 else 1)]
                body: Any = [{"type": "WhatMattersRecorded", "text": t} for t in texts]
                headers = dict(auth)
                if i % 2 and plan_id in known:
                    headers["If-Match"] = f'"{known[plan_id]}"'
                r = session.post(f"{url}/v1/plans/{plan_id}/events", headers=headers, timeout=60,
                                 json=body if len(body) > 1 else body[0])
                with lock:
                    answers.append((r.status_code, plan_id, texts, r.json() if r.status_code == 201 else r.text[:300],
                                    "If-Match" in headers))
                if r.status_code == 201:
                    known[plan_id] = r.json()["version"]
                elif r.status_code in (409, 412):  # read it again (through the other process) and go on
                    got = session.get(f"{urls[(n + i + 1) % 2]}/v1/plans/{plan_id}", headers=auth, timeout=60)
                    if got.status_code == 200:
                        known[plan_id] = int(got.headers["ETag"].strip('"'))
        except BaseException as e:  # noqa: BLE001 - reported by the test below
            errors.append(e)

    started = time.monotonic()
    threads = [threading.Thread(target=write, args=(n,)) for n in range(threads_count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - started
    assert not errors, errors
    statuses = Counter(a[0] for a in answers)
    print(f"\n[multi-instance] two plan-services, one schema: {len(answers)} writes in {took:.1f} s: "
          f"{dict(sorted(statuses.items()))}")
    assert set(statuses) <= {201, 409, 412}, [a for a in answers if a[0] not in (201, 409, 412)][:5]
    assert all(a[4] for a in answers if a[0] == 412), "412 without If-Match"
    assert statuses[412] > 0, "no If-Match was ever stale: the writers did not race"

    feed = _feed(urls[1], auth)
    by_event = Counter(item["event_id"] for item in feed)
    assert all(count == 1 for count in by_event.values()), [e for e, c in by_event.items() if c > 1][:5]
    for plan_id in plans:
        claimed: dict[int, str] = {}  # version -> the text a 201 answered for it
        for status, pid, texts, body, _ in answers:
            if status != 201 or pid != plan_id:
                continue
            versions = [e["version"] for e in body["events"]]
            assert versions == list(range(body["version"] - len(texts) + 1, body["version"] + 1)), body
            for version, text, event in zip(versions, texts, body["events"], strict=True):
                assert version not in claimed, f"two 201s for version {version} of {plan_id}"
                claimed[version] = text
                assert by_event[event["event_id"]] == 1, event  # in the log exactly once
        stored = {item["version"]: item for item in _timeline(urls[0], auth, plan_id)}
        assert sorted(stored) == list(range(1, len(stored) + 1)), f"versions with gaps: {sorted(stored)}"
        assert stored[1]["type"] == "PlanOpened"
        # every stored event is one a 201 answered for, with the text that request posted
        assert {v: item["details"]["text"] for v, item in stored.items() if v > 1} == claimed
        logged = sorted(item["plan_version"] for item in feed if item["plan_id"] == plan_id)
        assert logged == list(range(1, len(stored) + 1))
    assert sum(len(a[2]) for a in answers if a[0] == 201) + len(plans) == len(feed)


# -- 2. two relays -------------------------------------------------------------------------

def _relay(server: Any) -> dict[str, Any]:
    r = requests.get(f"{server.url}/readyz", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["checks"]["relay"]


def _event_ids(records: list) -> Counter:
    return Counter(dict(r.headers)["event_id"].decode() for r in records)


def test_two_relays_one_publishes_and_the_other_takes_over_when_it_is_killed(
        start_plan_service, postgres_env, kafka_bootstrap, kafka_topic, data_dir):
    env = _plan_env(postgres_env, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, KAFKA_TOPIC=kafka_topic,
                    PLAN_SERVICE_RELAY="inline", PLAN_SERVICE_WORKERS="1", PLAN_SERVICE_THREADS="4")
    a, b = start_plan_service(**env), start_plan_service(**env)
    auth = _writer(data_dir)
    assert wait_for(lambda: sum(bool(_relay(s)["leader"]) for s in (a, b)) == 1, 20, interval=0.2), \
        (_relay(a), _relay(b))
    leader, follower = (a, b) if _relay(a)["leader"] else (b, a)

    # steady state: writes through both; only the leader publishes, each event once
    plans = [_open_plan(s.url, auth) for s in (a, b, a, b)]
    for i in range(24):
        events = [{"type": "WhatMattersRecorded", "text": f"s{i}-{k}"} for k in range(1 + i % 3)]
        r = requests.post(f"{(a, b)[i % 2].url}/v1/plans/{plans[i % 4]}/events", headers=auth, json=events,
                          timeout=30)
        assert r.status_code == 201, r.text
    committed = {item["event_id"] for item in _feed(follower.url, auth)}
    on_topic = _event_ids(read_topic(kafka_bootstrap, kafka_topic, len(committed), timeout=30, distinct=True))
    assert set(on_topic) == committed and set(on_topic.values()) == {1}, on_topic.most_common(3)
    assert wait_for(lambda: _relay(leader)["published"] == len(committed), 10), _relay(leader)
    idle = _relay(follower)
    assert idle["leader"] is False and idle["published"] == 0, idle
    assert "relay is leader" in leader.logs() and "relay is leader" not in follower.logs()

    # the leader is killed while writes go on through the other process
    stop = threading.Event()
    written: list[tuple[float, list[str]]] = []  # (answered at, wall clock; event ids)
    failures: list[str] = []

    def keep_writing() -> None:
        session = requests.Session()
        i = 0
        while not stop.is_set():
            r = session.post(f"{follower.url}/v1/plans/{plans[i % 4]}/events", headers=auth, timeout=30,
                             json=[{"type": "WhatMattersRecorded", "text": f"k{i}"}])
            if r.status_code != 201:
                failures.append(f"{r.status_code} {r.text[:200]}")
            else:
                written.append((time.time(), [e["event_id"] for e in r.json()["events"]]))
            i += 1
            stop.wait(0.02)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        time.sleep(0.5)
        killed_at, t0 = time.time(), time.monotonic()
        leader.stop(signal.SIGKILL)
        led = wait_for(lambda: _relay(follower)["leader"], 30, interval=0.05)
        took_lead = time.monotonic() - t0
        time.sleep(1.0)
    finally:
        stop.set()
        writer.join()
    assert led, f"no takeover within 30 s:\n{follower.logs()[-3000:]}"
    assert not failures, failures[:3]

    committed_items = {item["event_id"]: item for item in _feed(follower.url, auth)}
    records = read_topic(kafka_bootstrap, kafka_topic, len(committed_items), timeout=60, distinct=True)
    on_topic = _event_ids(records)
    assert set(on_topic) == set(committed_items), (set(committed_items) - set(on_topic), set(on_topic) - set(committed_items))
    values: dict[str, set[bytes]] = defaultdict(set)
    for r in records:
        values[dict(r.headers)["event_id"].decode()].add(r.value)
    assert all(len(v) == 1 for v in values.values()), "a re-sent event_id with a different message"
    duplicates = sum(on_topic.values()) - len(on_topic)
    first_sent = {}
    for r in records:
        event_id = dict(r.headers)["event_id"].decode()
        first_sent[event_id] = min(first_sent.get(event_id, r.timestamp / 1000), r.timestamp / 1000)
    after_kill = [(at, ids) for at, ids in written if at > killed_at]
    assert after_kill, "nothing written after the kill"
    resumed = min(first_sent[i] for _, ids in after_kill for i in ids) - killed_at
    worst = max(first_sent[i] - at for at, ids in after_kill for i in ids)
    print(f"\n[multi-instance] relay takeover: leader SIGKILLed; the other led after {took_lead:.2f} s "
          f"(its /readyz), published the first post-kill event {resumed:.2f} s after the kill; "
          f"worst POST-to-topic delay of an event written during the takeover {worst:.2f} s; "
          f"{len(committed_items)} events committed, all on the topic, {duplicates} re-sent (same event_id)")
    assert took_lead < 15, took_lead


# -- 3. two notification-service members of one consumer group ------------------------------

def _group(bootstrap: str, group: str) -> dict[str, list[int]]:
    """member id -> partitions assigned, as the group coordinator says."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="tests")
    try:
        description = admin.describe_groups([group])[group]
        if description["group_state"] != "Stable":
            return {}
        return {m["member_id"]: sorted(p for assigned in (m["member_assignment"] or {}).get("assigned_partitions", [])
                                       for p in assigned["partitions"])
                for m in description["members"]}
    finally:
        admin.close()


class PlanStream:
    """Integration events as the relay publishes them (plan_service.adapters.kafka.message), for
    synthetic plans: PlanOpened (municipal, 18-25), CoordinatorAssigned (k1, specialist): a
    triangle meeting is suggested; ``fillers`` WhatMatters; the meeting scheduled (the
    suggestion resolved) and missed: a no-show follow-up."""

    def __init__(self, bootstrap: str, topic: str):
        from kafka import KafkaProducer

        self.topic = topic
        self.producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all", linger_ms=20,
                                      batch_size=512 * 1024, max_in_flight_requests_per_connection=1)
        self.plans: dict[str, int] = {}  # plan id -> its last version
        self.position = 0

    def plan(self, fillers: int = 0) -> None:
        from careplan_shared.events import IntegrationEvent, event_id_for
        from plan_service.adapters.kafka import message

        plan_id = uuid.uuid4()
        now = datetime.now(timezone.utc)
        payloads: list[tuple[str, dict[str, Any]]] = [
            ("PlanOpened", {"service_level": "municipal", "age_band": "18-25"}),
            ("CoordinatorAssigned", {"coordinator_id": "k1", "service_level": "specialist"}),
            *[("WhatMattersRecorded", {"language": "nb"})] * fillers,
            ("TriangleMeetingScheduled", {"meeting_id": "m1", "scheduled_for": now - timedelta(hours=2),
                                          "place": "Kafeen", "no_show_strategy": "Koordinator ringer"}),
            ("TriangleMeetingMissed", {"meeting_id": "m1"}),
        ]
        for version, (event_type, payload) in enumerate(payloads, start=1):
            self.position += 1
            event = IntegrationEvent(event_id_for(plan_id, version), event_type, 1, plan_id, version,
                                     self.position, now, now, payload)
            self.producer.send(self.topic, **message(event))
        self.plans[str(plan_id)] = len(payloads)

    def flush(self) -> None:
        self.producer.flush(timeout=60)

    def close(self) -> None:
        self.producer.close(timeout=10)


def _end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), client_id="tests")
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(parts).items()}
    finally:
        consumer.close()


def test_two_notification_services_in_one_group_survive_a_rebalance_mid_batch_and_a_kill(
        start_notification_service, postgres_env, kafka_bootstrap, kafka_topic):
    import psycopg

    url = urlsplit(require_infra("PostgreSQL", "CAREPLAN_TEST_DATABASE_URL"))
    schema = postgres_env["POSTGRES_SCHEMA"]
    group = f"test-{uuid.uuid4().hex[:8]}"
    env = {"NOTIFICATION_TRANSPORT": "kafka", "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "KAFKA_TOPIC": kafka_topic,
           "NOTIFICATION_KAFKA_GROUP": group, "NOTIFICATION_SERVICE_PERSISTENCE": "postgres",
           "NOTIFICATION_SERVICE_DATABASE_URL": f"postgresql://{url.netloc}{url.path}"
                                                f"?options={quote(f'-csearch_path={schema}')}",
           "NOTIFICATION_ENCRYPTION_KEY": STORE_KEY, "PLAN_SERVICE_URL": "http://127.0.0.1:9"}

    def rows(sql: str) -> list[tuple]:
        with psycopg.connect(url.geturl(), autocommit=True, options=f"-c search_path={schema}") as db:
            return db.execute(sql).fetchall()

    def handled(server: Any) -> int:
        return requests.get(f"{server.url}/readyz", timeout=10).json()["checks"]["consumer"]["handled"]

    def processed() -> int:
        [(count,)] = rows("SELECT coalesce(sum(position + 1), 0) FROM consumer_positions WHERE source = 'kafka'")
        return int(count)

    def caught_up(offsets: dict[int, int]) -> bool:
        stored = dict(rows("SELECT part, position FROM consumer_positions WHERE source = 'kafka'"))
        return all(stored.get(p, -1) >= offset - 1 for p, offset in offsets.items() if offset)

    stream = PlanStream(kafka_bootstrap, kafka_topic)
    try:
        # A backlog. The first member starts on it and is paused (SIGSTOP, as a long GC pause or a
        # starved CPU would) in the middle of it, while the second starts and joins the group:
        # the rebalance begins while the first is mid-batch, and completes when it goes on.
        began = time.monotonic()
        for _ in range(300):
            stream.plan(fillers=50)
        stream.flush()
        backlog = sum(stream.plans.values())
        produced = time.monotonic() - began
        first = start_notification_service(**env)
        assert wait_for(lambda: handled(first) > 0, 60, interval=0.02), first.logs()[-3000:]
        os.killpg(first.proc.pid, signal.SIGSTOP)
        try:
            done_at_pause = processed()
            second_started = time.monotonic()
            second = start_notification_service(**env)
        finally:
            os.killpg(first.proc.pid, signal.SIGCONT)
        assert wait_for(lambda: len(_group(kafka_bootstrap, group)) == 2, 30, interval=0.1), \
            (_group(kafka_bootstrap, group), first.logs()[-2000:], second.logs()[-2000:])
        joined = time.monotonic() - second_started
        offsets = _end_offsets(kafka_bootstrap, kafka_topic)
        assert wait_for(lambda: caught_up(offsets), 90, interval=0.2), (first.logs()[-2000:], second.logs()[-2000:])
        print(f"\n[multi-instance] consumer group: {backlog} backlog events sent in {produced:.1f} s; the first "
              f"member paused after {done_at_pause}; both in the group {joined:.1f} s after the second started; "
              f"then the first handled {handled(first)}, the second {handled(second)}")
        assert 0 < done_at_pause < backlog  # the rebalance began with the backlog under way
        # every record was handed to one member once: nothing re-delivered across the rebalance (how much
        # the second gets depends on how fast the first gets through its batches before it rejoins)
        assert handled(first) + handled(second) == backlog
        members = _group(kafka_bootstrap, group)
        assert sorted(len(p) for p in members.values()) == [3, 3], members

        # a stream; one member is SIGKILLed in the middle of it
        stop = threading.Event()

        def keep_sending() -> None:
            while not stop.is_set():
                stream.plan(fillers=2)
                stream.flush()
                stop.wait(0.05)

        sender = threading.Thread(target=keep_sending)
        sender.start()
        try:
            time.sleep(1.0)
            killed_at = time.monotonic()
            first.stop(signal.SIGKILL)
            time.sleep(1.0)
            at_kill = _end_offsets(kafka_bootstrap, kafka_topic)
            took_over = wait_for(lambda: len(_group(kafka_bootstrap, group)) == 1, 60, interval=0.2)
            reassigned = time.monotonic() - killed_at
            resumed = wait_for(lambda: caught_up(at_kill), 60, interval=0.1)
            caught = time.monotonic() - killed_at
            time.sleep(1.0)
        finally:
            stop.set()
            sender.join()
        assert took_over and resumed, second.logs()[-3000:]
        [(survivor, parts)] = _group(kafka_bootstrap, group).items()
        assert survivor in members and parts == list(range(6)), (members, survivor, parts)  # its own and the dead one's
        print(f"[multi-instance] consumer takeover: member SIGKILLed mid-stream; the survivor held all 6 partitions "
              f"{reassigned:.1f} s after the kill and had handled everything sent in the first second after it "
              f"{caught:.1f} s after the kill")

        offsets = _end_offsets(kafka_bootstrap, kafka_topic)
        assert wait_for(lambda: caught_up(offsets), 60, interval=0.2), second.logs()[-3000:]
    finally:
        stream.close()

    # every event applied once, every expected prompt exactly once
    views = dict(rows("SELECT plan_id, version FROM plan_views"))
    assert views == stream.plans
    prompts = rows("SELECT plan_id, rule, subject, status, recipient FROM prompts")
    keys = Counter((p, rule, subject) for p, rule, subject, _, _ in prompts)
    assert set(keys.values()) == {1}, keys.most_common(3)
    expected = {(p, "triangle_meeting_suggested", "plan", "resolved") for p in stream.plans} | \
               {(p, "no_show_follow_up", "m1#1", "open") for p in stream.plans}
    assert {(p, rule, subject, status) for p, rule, subject, status, _ in prompts} == expected
    assert {recipient for *_, recipient in prompts} == {"k1"}
    assert rows("SELECT count(*) FROM dead_letters") == [(0,)]
