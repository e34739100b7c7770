"""Wire the adapters into the application. Tests call it with their own Config."""

from __future__ import annotations

from dataclasses import dataclass

from careplan_shared.auth import DevTokenVerifier, load_or_create_dev_key
from plan_service.adapters.persistence import eventsourcing_env
from plan_service.application.plans import PlanApplication
from plan_service.config import Config
from plan_service.domain.plan import IndividualPlan


@dataclass
class Services:
    config: Config
    plans: PlanApplication
    verifier: DevTokenVerifier


def bootstrap(config: Config) -> Services:
    plans = PlanApplication(eventsourcing_env(config), write_batch_max=config.write_batch_max)
    plans.snapshotting_intervals = {IndividualPlan: config.snapshot_interval}
    verifier = DevTokenVerifier(load_or_create_dev_key(config.signing_key_file))
    return Services(config, plans, verifier)
