"""Fixtures for notification-service: synthetic integration events and an in-process service."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest

from careplan_shared.events import IntegrationEvent, encode_event, event_id_for
from notification_service.application.service import ManualClock

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)  # a Monday morning


class PlanStream:
    """Integration events of one synthetic plan, numbered as plan-service would number them:
    versions per plan, positions in one log shared by every plan."""

    log_positions = itertools.count(1)

    def __init__(self, plan_id: uuid.UUID | None = None):
        self.plan_id = plan_id or uuid.uuid4()
        self.version = 0

    def event(self, event_type: str, at: datetime = T0, **payload: Any) -> IntegrationEvent:
        self.version += 1
        return IntegrationEvent(event_id_for(self.plan_id, self.version), event_type, 1, self.plan_id,
                                self.version, next(self.log_positions), at, at, payload)

    def wire(self, event_type: str, at: datetime = T0, **payload: Any) -> dict[str, Any]:
        return encode_event(self.event(event_type, at, **payload))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def stream() -> Callable[..., PlanStream]:
    return PlanStream
