"""Wire the adapters into the application. Tests call it with their own Config."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from careplan_shared.auth import DevTokenVerifier, load_or_create_dev_key
from careplan_shared.oidc import verifier_from_env
from plan_service.adapters.persistence import eventsourcing_env, harden_postgres_pool
from plan_service.adapters.positions import (
    MemoryPositions,
    PostgresPositions,
    SQLitePositions,
    postgres_conninfo,
)
from plan_service.application.plans import PlanApplication
from plan_service.application.relay import Relay
from plan_service.config import Config
from plan_service.domain.plan import IndividualPlan


@dataclass
class Services:
    config: Config
    plans: PlanApplication
    verifier: Any  # DevTokenVerifier, or production issuers' (careplan_shared.oidc)
    access_log: Any = None
    kafka_health: Any = None
    relay: Relay | None = None
    _relay_stop: threading.Event | None = field(default=None, repr=False)

    def start_relay(self) -> None:
        """Run the relay in a thread of this process (one process relays: leader lock)."""
        if self.relay is not None and self._relay_stop is None:
            self.plans.committer.on_saved.append(self.relay.wakeup.set)
            _, self._relay_stop = self.relay.start_thread()

    def stop_relay(self) -> None:
        if self._relay_stop is not None:
            self._relay_stop.set()
            self._relay_stop = None


def positions_for(config: Config, relay_name: str):
    if config.persistence == "postgres":
        return PostgresPositions(postgres_conninfo(config.postgres),
                                 config.postgres.get("POSTGRES_SCHEMA", ""), relay_name)
    if config.persistence == "sqlite":
        return SQLitePositions(config.sqlite_file, relay_name)
    return MemoryPositions()


def access_log_for(config: Config):
    from plan_service.adapters import access_log

    if config.persistence == "postgres":
        return access_log.postgres_access_log(postgres_conninfo(config.postgres),
                                              config.postgres.get("POSTGRES_SCHEMA", ""))
    if config.persistence == "sqlite":
        return access_log.sqlite_access_log(config.access_log_file)
    return access_log.MemoryAccessLog()


def build_relay(config: Config, plans: PlanApplication) -> Relay:
    from plan_service.adapters.kafka import KafkaPublisher

    if not config.kafka_bootstrap_servers:
        raise ValueError("the relay needs KAFKA_BOOTSTRAP_SERVERS")
    publisher = KafkaPublisher(config.kafka_bootstrap_servers, config.kafka_topic)
    # back-off after a failed step: 0.1 s doubling to 1 s (not 5 s), so that the relay is
    # publishing again within about a second of the broker (or the store) being back
    return Relay(plans, publisher, positions_for(config, config.kafka_topic), max_backoff=1.0)


def bootstrap(config: Config, *, with_relay: bool | None = None, migrate: bool = True) -> Services:
    """``migrate``: first bring the store to the newest schema revision (under the migration
    lock; one query when it is there). In-process users (tests, `plan-service relay`) keep the
    default; `serve` migrates once in the gunicorn master, so its workers pass False and never
    create a table."""
    if migrate:
        from plan_service.adapters.migrations import migrate as migrate_store

        migrate_store(config)
    plans = PlanApplication(eventsourcing_env(config), write_batch_max=config.write_batch_max)
    harden_postgres_pool(plans)  # PostgreSQL down: 503 within a second; back: writes at once
    plans.snapshotting_intervals = {IndividualPlan: config.snapshot_interval}  # type: ignore[misc]  # eventsourcing types it ClassVar but reads it via self
    verifier = verifier_from_env(config.oidc, DevTokenVerifier(load_or_create_dev_key(config.signing_key_file)))
    services = Services(config, plans, verifier, access_log=access_log_for(config))
    if config.kafka_bootstrap_servers:
        from plan_service.adapters.kafka import KafkaHealth

        services.kafka_health = KafkaHealth(config.kafka_bootstrap_servers)
    if with_relay if with_relay is not None else config.relay == "inline":
        services.relay = build_relay(config, plans)
    return services
