"""One registry of event types (plan_service/domain/event_types.py): every event type of the plan
has every piece the services need, and nothing knows a type the registry does not.

A new event type fails here until it has: its command, its payload, a section, a summary, who may
record it (all in its registry entry), a wire schema, and notification-service's handling (or its
word that it has no use for it).
"""

from __future__ import annotations

import inspect
import logging

import pytest
from marshmallow import ValidationError

from careplan_shared.auth import ROLES
from careplan_shared.events import v1
from notification_service.domain import view as notification_view
from plan_service.api import schemas
from plan_service.application import projection
from plan_service.application.integration import PLAN_EVENT_TYPES
from plan_service.domain import event_types
from plan_service.domain.event_types import BY_NAME, REGISTRY, SECTIONS, Message
from plan_service.domain.plan import IndividualPlan

EVENT_CLASSES = {cls for cls in vars(IndividualPlan).values()
                 if isinstance(cls, type) and issubclass(cls, IndividualPlan.Event)
                 and cls not in (IndividualPlan.Event, IndividualPlan.Created)}
TYPES = sorted(BY_NAME)


def test_every_event_class_of_the_plan_is_registered():
    assert set(REGISTRY) == EVENT_CLASSES


@pytest.mark.parametrize("name", TYPES)
def test_each_type_has_every_piece(name):
    entry = BY_NAME[name]
    assert entry.section in SECTIONS
    assert entry.recorders and entry.recorders <= set(ROLES)
    assert set(entry.fields) <= set(entry.event.__annotations__) | {"recorded_by", "occurred_at"}
    assert all(section in SECTIONS for section in entry.fields.values())
    # the summary: a translatable message, whatever the reader is shown (nothing, here)
    message = entry.summary(type("Nothing", (), {"__getattr__": lambda self, _: None})())
    assert isinstance(message, Message) and message.format()
    # what is posted: its payload, the very parameters of its command; PlanOpened is POST /v1/plans
    if name == "PlanOpened":
        assert entry.command is None and not entry.payload
    else:
        assert callable(entry.command) and name in schemas.EVENT_SCHEMAS
        parameters = inspect.signature(entry.command).parameters
        taken = {p for p, info in parameters.items() if info.kind is inspect.Parameter.KEYWORD_ONLY}
        assert set(entry.payload) == taken, "the payload is what the command takes"
        assert set(schemas.EVENT_SCHEMAS[name].fields) == {"type", "occurred_at", *entry.payload}
    assert name in v1.SCHEMAS and name in PLAN_EVENT_TYPES  # the wire contract
    handled = name in notification_view._HANDLERS
    assert handled != (name in notification_view.UNUSED_EVENT_TYPES), \
        "notification-service handles it, or says it has no use for it (not both)"


def test_nothing_knows_a_type_the_registry_does_not():
    assert set(schemas.EVENT_SCHEMAS) == {n for n in BY_NAME if n != "PlanOpened"}
    assert set(v1.SCHEMAS) == set(BY_NAME)
    assert set(notification_view._HANDLERS) | set(notification_view.UNUSED_EVENT_TYPES) == set(BY_NAME)


def test_an_unregistered_type_is_refused_on_write():
    with pytest.raises(ValidationError) as raised:
        schemas.load_events({"type": "MedicationChanged", "text": "x"})
    assert "type" in raised.value.messages


def test_an_unregistered_type_is_shown_to_nobody_with_a_warning(caplog):
    caplog.set_level(logging.WARNING)
    for sections in (event_types.FULL, frozenset({"goals"})):
        assert projection.event_visible("MedicationChanged", sections) is False
        assert projection.event_details("MedicationChanged", {"text": "x"}, sections) == {}
    assert "registry does not know" in caplog.text
