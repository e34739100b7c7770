"""Plan events -> integration events (the shared contract). Only schema fields leave."""

from __future__ import annotations

from typing import Any

from careplan_shared.events import IntegrationEvent, event_id_for, payload_schema
from careplan_shared.events.registry import CURRENT_VERSION
from plan_service.domain import event_types
from plan_service.domain.plan import IndividualPlan, event_type

# What leaves plan-service: the registered event types only (domain/event_types.py).
PLAN_EVENT_CLASSES = tuple(event_types.REGISTRY)
PLAN_EVENT_TOPICS = tuple(cls.TOPIC for cls in PLAN_EVENT_CLASSES)
PLAN_EVENT_TYPES = tuple(cls.__name__ for cls in PLAN_EVENT_CLASSES)


def event_ref(event: IndividualPlan.Event) -> dict[str, Any]:
    return {
        "version": event.originator_version,
        "type": event_type(event),
        "event_id": str(event_id_for(event.originator_id, event.originator_version)),
    }


def to_integration_event(event: IndividualPlan.Event, position: int) -> IntegrationEvent:
    name = event_type(event)
    schema = payload_schema(name, CURRENT_VERSION)
    return IntegrationEvent(
        event_id=event_id_for(event.originator_id, event.originator_version),
        event_type=name,
        schema_version=CURRENT_VERSION,
        plan_id=event.originator_id,
        plan_version=event.originator_version,
        position=position,
        occurred_at=event.occurred_at,
        recorded_at=event.timestamp,
        payload={field: getattr(event, field) for field in schema.fields},
    )
