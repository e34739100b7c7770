"""The integration-event envelope: what every consumer can rely on, whatever the payload."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from careplan_shared.events.registry import CURRENT_VERSION, PAYLOAD_SCHEMAS, payload_schema

# Fixed namespace: the same (plan, version) always gets the same event_id, so a
# re-sent event is recognisable as the same event by every consumer.
EVENT_ID_NAMESPACE = uuid.UUID("5b1f0c7e-8f0e-4c55-9a35-2f3e6c1d7a10")


def event_id_for(plan_id: uuid.UUID, plan_version: int) -> uuid.UUID:
    return uuid.uuid5(EVENT_ID_NAMESPACE, f"{plan_id}:{plan_version}")


class UnknownEventType(ValueError):
    pass


@dataclass(frozen=True)
class IntegrationEvent:
    event_id: uuid.UUID
    event_type: str
    schema_version: int
    plan_id: uuid.UUID
    plan_version: int
    position: int
    occurred_at: datetime
    recorded_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)


class EnvelopeSchema(Schema):
    class Meta:
        ordered = True

    event_id = fields.UUID(required=True)
    event_type = fields.String(required=True, validate=validate.Length(min=1, max=64))
    schema_version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    plan_id = fields.UUID(required=True)
    plan_version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    position = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    occurred_at = fields.AwareDateTime(required=True)
    recorded_at = fields.AwareDateTime(required=True)
    payload = fields.Dict(required=True)


_envelope = EnvelopeSchema()


def encode_event(event: IntegrationEvent) -> dict[str, Any]:
    """Envelope + payload as JSON-ready primitives; validates the payload on the way out."""
    schema = payload_schema(event.event_type, event.schema_version)
    errors = schema.validate(schema.dump(event.payload))
    if errors:
        raise ValidationError(errors)
    body = _envelope.dump(event)
    body["payload"] = schema.dump(event.payload)
    return body


def decode_event(data: dict[str, Any]) -> IntegrationEvent:
    """Validate an envelope and its payload; raises ValidationError or UnknownEventType."""
    envelope = _envelope.load(data)
    key = (envelope["event_type"], envelope["schema_version"])
    if key not in PAYLOAD_SCHEMAS:
        raise UnknownEventType(f"{key[0]} v{key[1]} (this consumer knows v{CURRENT_VERSION})")
    envelope["payload"] = payload_schema(*key).load(envelope["payload"])
    return IntegrationEvent(**envelope)
