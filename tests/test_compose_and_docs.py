"""docker-compose.yml and the README say the same as the code's configuration."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from careplan_shared.authentication import SHARED_VARIABLES
from careplan_shared.metrics import VARIABLES as METRICS_VARIABLES
from careplan_shared.oidc import OIDC_VARIABLES
from notification_service.config import VARIABLES as NOTIFICATION_VARIABLES
from notification_service.config import Config as NotificationConfig
from plan_service.config import VARIABLES, Config

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_parses_and_has_the_services():
    services = compose()["services"]
    assert {"postgres", "kafka", "plan-service", "notification-service"} <= set(services)
    for name in ("postgres", "kafka", "plan-service", "notification-service"):
        assert "healthcheck" in services[name], name


def test_plan_service_variables_are_the_ones_the_code_reads():
    service = compose()["services"]["plan-service"]
    env = {k: str(v) for k, v in service["environment"].items()}
    unknown = {k for k in env if k not in VARIABLES and not k.startswith("POSTGRES_")}
    assert not unknown, f"compose sets variables the code never reads: {unknown}"
    config = Config.from_env(env)
    assert config.persistence == "postgres" and config.relay == "inline"
    assert service["ports"] == [f"127.0.0.1:{config.port}:{config.port}"]
    assert config.port == Config().port == 8081
    # the database URL matches the postgres service's credentials
    db = compose()["services"]["postgres"]["environment"]
    url = urlsplit(env["PLAN_SERVICE_DATABASE_URL"])
    assert (url.username, url.password, url.path.strip("/"), url.hostname) == (
        db["POSTGRES_USER"], db["POSTGRES_PASSWORD"], db["POSTGRES_DB"], "postgres")


def test_notification_service_variables_are_the_ones_the_code_reads():
    services = compose()["services"]
    env = {k: str(v) for k, v in services["notification-service"]["environment"].items()}
    assert set(env) <= set(NOTIFICATION_VARIABLES)
    config = NotificationConfig.from_env(env)
    assert (config.transport, config.persistence, config.port) == ("kafka", "postgres", NotificationConfig().port)
    assert services["notification-service"]["ports"] == [f"127.0.0.1:{config.port}:{config.port}"]
    assert config.kafka_topic == services["plan-service"]["environment"]["KAFKA_TOPIC"]
    assert config.plan_service_url == f"http://plan-service:{Config().port}"


def test_kafka_matches_infra_and_code():
    services = compose()["services"]
    kafka_env = services["kafka"]["environment"]
    plan_env = services["plan-service"]["environment"]
    port = plan_env["KAFKA_BOOTSTRAP_SERVERS"].rsplit(":", 1)[1]
    assert f"PLAINTEXT://kafka:{port}" == kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    assert port == "19092" and "19092" in (ROOT / "infra/kafka/env").read_text()
    assert plan_env["KAFKA_TOPIC"] == Config().kafka_topic
    topics = services["kafka-topics"]["command"][0]
    assert f"--topic {Config().kafka_topic} --partitions 6" in topics
    assert f"{Config().kafka_topic}.dlq" in topics
    pom_version = re.search(r"<kafka.version>([^<]+)</kafka.version>",
                            (ROOT / "infra/kafka/pom.xml").read_text()).group(1)
    assert services["kafka"]["image"] == f"apache/kafka:{pom_version}"


def test_readme_documents_every_variable_and_only_real_ones():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Configuration"):]
    table = table[: table.index("\n## ", 3)]
    first_cells = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    documented = {name for cell in first_cells for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)}
    read = set(VARIABLES) | set(NOTIFICATION_VARIABLES) | set(OIDC_VARIABLES) | set(SHARED_VARIABLES) | set(METRICS_VARIABLES)
    assert documented - read == set(), "README documents variables the code does not read"
    assert read - documented == set(), "README misses variables"
