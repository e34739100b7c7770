"""/metrics of both services as real gunicorn processes (issue 13): behind the token, in the
Prometheus text format, counters that move, and requests answered by either of plan-service's
two workers added up (prometheus-client's multiprocess mode), a killed worker's counts kept."""

from __future__ import annotations

import os
import signal
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from careplan_shared.auth import load_or_create_dev_key, mint_token
from careplan_testing import wait_for

pytestmark = pytest.mark.e2e

TOKEN = "e2e-metrics-token-" + "0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

PLAN_METRICS = {
    "careplan_http_requests": "counter",
    "careplan_http_request_duration_seconds": "histogram",
    "plan_service_group_commit_batch_size": "histogram",
    "plan_service_group_commit_duration_seconds": "histogram",
}
NOTIFICATION_METRICS = {
    "careplan_http_requests": "counter",
    "careplan_http_request_duration_seconds": "histogram",
    "notification_prompts_open": "gauge",
    "notification_prompt_escalations": "counter",
    "notification_dead_letters_open": "gauge",
    "notification_consumer_lag_events": "gauge",
    "notification_consumer_events": "counter",
    "notification_consumer_batch_duration_seconds": "histogram",
    "careplan_metrics_collector_success": "gauge",
}


def scrape(url: str) -> dict:
    response = requests.get(f"{url}/metrics", headers=AUTH, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {f.name: f for f in text_string_to_metric_families(response.text)}


def total(families: dict, family: str, sample: str, **labels: str) -> float:
    return sum(s.value for s in families[family].samples
               if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()))


def workers_of(master: int) -> set[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return {int(pid) for pid in children}


def test_both_services_metrics_counted_across_workers(start_plan_service, start_notification_service, data_dir):
    plan = start_plan_service(PLAN_SERVICE_WORKERS="2", PLAN_SERVICE_THREADS="4", CAREPLAN_METRICS_TOKEN=TOKEN)
    notifications = start_notification_service(PLAN_SERVICE_URL=plan.url, NOTIFICATION_TRANSPORT="feed",
                                               CAREPLAN_METRICS_TOKEN=TOKEN)
    for url in (plan.url, notifications.url):  # not public: no token, no metrics
        assert requests.get(f"{url}/metrics", timeout=10).status_code == 401
    assert plan.proc is not None
    multiproc = data_dir / "metrics" / f"plan-service-{plan.url.rsplit(':', 1)[1]}"
    assert oct(multiproc.stat().st_mode & 0o777) == "0o700"

    key = load_or_create_dev_key(data_dir / "dev-signing.key")
    writer = {"Authorization": "Bearer " + mint_token(key, "epr-1", "integration", on_behalf_of="clin-7")}
    response = requests.post(f"{plan.url}/v1/plans", headers=writer, timeout=10, json={
        "patient_id": "pat-e2e-metrics", "service_level": "municipal", "age_band": "18-25"})
    assert response.status_code == 201, response.text
    plan_id = response.json()["plan_id"]

    route = {"route": "/v1/plans/<uuid:plan_id>", "method": "GET", "status": "200"}
    before = scrape(plan.url)
    assert {name: before[name].type for name in PLAN_METRICS} == PLAN_METRICS
    count = 60

    def read(_: int) -> int:  # a new connection each: the kernel spreads them over both workers
        return requests.get(f"{plan.url}/v1/plans/{plan_id}", headers=writer, timeout=30).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(read, range(count))) == {200}
    workers = workers_of(plan.proc.pid)
    assert len(workers) == 2
    wrote = {int(p.stem.rsplit("_", 1)[1]) for p in multiproc.glob("counter_*.db")}
    assert workers <= wrote, f"not every worker counted: {workers} vs files of {wrote}"
    for _ in range(4):  # whichever worker answers the scrape: the sum of both
        after = scrape(plan.url)
        counted = "careplan_http_requests_total"
        assert total(after, "careplan_http_requests", counted, **route) - total(
            before, "careplan_http_requests", counted, **route) == count
    commits = "plan_service_group_commit_batch_size_count"
    assert total(after, "plan_service_group_commit_batch_size", commits) >= 1

    # A worker killed: gunicorn starts another; what the dead one counted is kept.
    os.kill(min(workers), signal.SIGKILL)
    assert wait_for(lambda: len(workers_of(plan.proc.pid)) == 2 and workers_of(plan.proc.pid) != workers, 30)
    assert wait_for(lambda: requests.get(f"{plan.url}/healthz", timeout=5).status_code == 200, 30)
    again = scrape(plan.url)
    assert total(again, "careplan_http_requests", counted, **route) == total(
        after, "careplan_http_requests", counted, **route)
    text = requests.get(f"{plan.url}/metrics", headers=AUTH, timeout=10).text
    assert plan_id not in text and "pat-e2e-metrics" not in text

    # notification-service: the store-read metrics, the feed's lag, and its counters moving
    assert wait_for(lambda: total(scrape(notifications.url), "notification_consumer_events",
                                  "notification_consumer_events_total") >= 1, 30)
    first = scrape(notifications.url)
    assert {name: first[name].type for name in NOTIFICATION_METRICS} == NOTIFICATION_METRICS
    lag = [(s.labels, s.value) for s in first["notification_consumer_lag_events"].samples]
    assert [labels for labels, _ in lag] == [{"source": "feed", "partition": "0"}]
    success = {s.labels["collector"]: s.value for s in first["careplan_metrics_collector_success"].samples}
    assert success == {"notification_store": 1, "consumer_lag": 1}
    for _ in range(3):
        assert requests.get(f"{notifications.url}/healthz", timeout=10).status_code == 200
    second = scrape(notifications.url)
    health = {"route": "/healthz", "method": "GET", "status": "200"}
    assert total(second, "careplan_http_requests", "careplan_http_requests_total", **health) - total(
        first, "careplan_http_requests", "careplan_http_requests_total", **health) == 3
    assert plan_id not in requests.get(f"{notifications.url}/metrics", headers=AUTH, timeout=10).text


def test_relay_and_consumer_lag_with_kafka(start_plan_service, start_notification_service, data_dir,
                                           postgres_env, kafka_bootstrap, kafka_topic):
    plan = start_plan_service(PLAN_SERVICE_PERSISTENCE="postgres", KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
                              KAFKA_TOPIC=kafka_topic, PLAN_SERVICE_WORKERS="2", CAREPLAN_METRICS_TOKEN=TOKEN,
                              **postgres_env)
    notifications = start_notification_service(
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, KAFKA_TOPIC=kafka_topic, NOTIFICATION_TRANSPORT="kafka",
        NOTIFICATION_KAFKA_GROUP=f"test-{uuid.uuid4().hex[:8]}", PLAN_SERVICE_URL=plan.url,
        CAREPLAN_METRICS_TOKEN=TOKEN)
    try:
        key = load_or_create_dev_key(data_dir / "dev-signing.key")
        writer = {"Authorization": "Bearer " + mint_token(key, "epr-1", "integration", on_behalf_of="clin-7")}
        for n in range(3):
            response = requests.post(f"{plan.url}/v1/plans", headers=writer, timeout=10, json={
                "patient_id": f"pat-e2e-kafka-{n}", "service_level": "municipal", "age_band": "18-25"})
            assert response.status_code == 201, response.text

        def relayed() -> bool:
            families = scrape(plan.url)
            return (total(families, "plan_service_relay_head_position", "plan_service_relay_head_position") >= 3
                    and total(families, "plan_service_relay_lag_events", "plan_service_relay_lag_events") == 0)

        assert wait_for(relayed, 30), requests.get(f"{plan.url}/metrics", headers=AUTH, timeout=10).text[-3000:]
        families = scrape(plan.url)
        for name in ("plan_service_relay_position", "plan_service_relay_head_position",
                     "plan_service_relay_lag_events", "plan_service_relay_lag_seconds", "plan_service_relay_leader"):
            assert families[name].type == "gauge", name
        assert total(families, "plan_service_relay_leader", "plan_service_relay_leader") == 1  # one of two workers
        assert total(families, "plan_service_relay_published_events", "plan_service_relay_published_events_total") >= 3
        assert total(families, "plan_service_relay_lag_seconds", "plan_service_relay_lag_seconds") == 0

        def caught_up() -> bool:
            lag = scrape(notifications.url).get("notification_consumer_lag_events")
            return lag is not None and len(lag.samples) == 6 and all(s.value == 0 for s in lag.samples)

        assert wait_for(caught_up, 60), notifications.logs()[-2000:]
        partitions = {s.labels["partition"] for s in scrape(notifications.url)["notification_consumer_lag_events"].samples}
        assert partitions == {str(p) for p in range(6)}
    finally:
        notifications.stop()
        plan.stop()
