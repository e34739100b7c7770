"""Version 1 payload schemas, one per plan event type.

Add a field: keep it optional, stay on v1. Remove or retype a field: add v2 beside these
and keep v1 readable until every consumer has moved.
"""

from typing import Any

from marshmallow import Schema, fields, validate

from careplan_shared.vocabulary import (
    AGE_BANDS,
    EXPRESSED_BY,
    INFORMATION_FORMS,
    INFORMATION_TOPICS,
    PARTICIPANT_KINDS,
    SERVICE_LEVELS,
)

ID = fields.String  # ids come from the EPR: opaque strings
_id: dict[str, Any] = dict(required=True, validate=validate.Length(min=1, max=64))


class _Payload(Schema):
    class Meta:
        ordered = True


class PlanOpened(_Payload):
    service_level = fields.String(required=True, validate=validate.OneOf(SERVICE_LEVELS))
    age_band = fields.String(allow_none=True, validate=validate.OneOf(AGE_BANDS))
    birth_date = fields.Date(allow_none=True)


class CoordinatorAssigned(_Payload):
    coordinator_id = ID(**_id)
    service_level = fields.String(allow_none=True, validate=validate.OneOf(SERVICE_LEVELS))


class WhatMattersRecorded(_Payload):
    language = fields.String(required=True)


class GoalSet(_Payload):
    goal_id = ID(**_id)
    expressed_by = fields.String(required=True, validate=validate.OneOf(EXPRESSED_BY))
    target_date = fields.Date(allow_none=True)


class GoalRevised(_Payload):
    goal_id = ID(**_id)
    target_date = fields.Date(allow_none=True)


class GoalAchieved(_Payload):
    goal_id = ID(**_id)


class GoalAbandoned(_Payload):
    goal_id = ID(**_id)


class InformationGiven(_Payload):
    information_id = ID(**_id)
    topic = fields.String(required=True, validate=validate.OneOf(INFORMATION_TOPICS))
    form = fields.String(required=True, validate=validate.OneOf(INFORMATION_FORMS))


class ParticipantAdded(_Payload):
    participant_id = ID(**_id)
    kind = fields.String(required=True, validate=validate.OneOf(PARTICIPANT_KINDS))
    service_level = fields.String(allow_none=True, validate=validate.OneOf(SERVICE_LEVELS))


class ParticipantRemoved(_Payload):
    participant_id = ID(**_id)


class RelativeConsentGiven(_Payload):
    relative_id = ID(**_id)
    scope = fields.List(fields.String(), required=True)
    valid_from = fields.AwareDateTime(allow_none=True)
    valid_until = fields.AwareDateTime(allow_none=True)


class RelativeConsentWithdrawn(_Payload):
    relative_id = ID(**_id)


class EvaluationScheduled(_Payload):
    evaluation_id = ID(**_id)
    scheduled_for = fields.AwareDateTime(required=True)


class EvaluationHeld(_Payload):
    evaluation_id = ID(**_id)
    patient_took_part = fields.Boolean(required=True)


class TriangleMeetingRequested(_Payload):
    meeting_id = ID(**_id)


class TriangleMeetingScheduled(_Payload):
    meeting_id = ID(**_id)
    scheduled_for = fields.AwareDateTime(required=True)
    place = fields.String(required=True)
    transport = fields.String(allow_none=True)
    companion = fields.String(allow_none=True)
    no_show_strategy = fields.String(required=True)


class TriangleMeetingHeld(_Payload):
    meeting_id = ID(**_id)


class TriangleMeetingMissed(_Payload):
    meeting_id = ID(**_id)


class PlanClosed(_Payload):
    reason = fields.String(required=True)


SCHEMAS = {
    cls.__name__: cls
    for cls in (
        PlanOpened,
        CoordinatorAssigned,
        WhatMattersRecorded,
        GoalSet,
        GoalRevised,
        GoalAchieved,
        GoalAbandoned,
        InformationGiven,
        ParticipantAdded,
        ParticipantRemoved,
        RelativeConsentGiven,
        RelativeConsentWithdrawn,
        EvaluationScheduled,
        EvaluationHeld,
        TriangleMeetingRequested,
        TriangleMeetingScheduled,
        TriangleMeetingHeld,
        TriangleMeetingMissed,
        PlanClosed,
    )
}
