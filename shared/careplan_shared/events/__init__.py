"""Integration events: the only contract between plan-service and its consumers.

An integration event is a JSON object: an envelope (``envelope.EnvelopeSchema``) whose
``payload`` is validated by the schema registered for its ``event_type`` and
``schema_version`` (``registry``). Payloads are data-minimised: free text written in the
patient's own words (what matters, goal texts, outcomes) stays inside plan-service.
"""

from careplan_shared.events.envelope import (
    EnvelopeSchema,
    IntegrationEvent,
    UnknownEventType,
    decode_event,
    encode_event,
    event_id_for,
)
from careplan_shared.events.registry import PAYLOAD_SCHEMAS, payload_schema

__all__ = [
    "EnvelopeSchema",
    "IntegrationEvent",
    "PAYLOAD_SCHEMAS",
    "UnknownEventType",
    "decode_event",
    "encode_event",
    "event_id_for",
    "payload_schema",
]
