"""Fixtures of plan-service's integration tests."""

from __future__ import annotations

import pytest

from plan_service.application.plans import PlanApplication
from plan_service.bootstrap import bootstrap
from plan_service.config import Config


@pytest.fixture(params=["sqlite", "postgres"])
def make_app(request, tmp_path):
    """make_app() -> a PlanApplication on the store; call again for a second instance or a
    restart on the same data."""
    if request.param == "postgres":
        postgres = request.getfixturevalue("postgres_env")
        config = Config(data_dir=tmp_path, persistence="postgres", snapshot_interval=10,
                        postgres={**postgres, "POSTGRES_POOL_SIZE": "10"})
    else:
        config = Config(data_dir=tmp_path, persistence="sqlite", snapshot_interval=10)
    apps: list[PlanApplication] = []

    def make() -> PlanApplication:
        app = bootstrap(config).plans
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()
