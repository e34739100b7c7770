"""What a reader may see of a plan: ONE projection by sections, used by every read path (the
plan, its timeline, and what later reads the plan: the FHIR export, the pages).

A reader is given a set of sections. A relative gets the sections their current consent
covers (values.CONSENT_SCOPES); everyone else who may read the plan gets ``FULL``, which adds
``RECORD``: the parts of the record no consent covers: who the patient is (patient id, date
of birth, age band, service levels), who recorded each change, and notes written on closing.
Anything not named here is not shown: a new field or event type stays hidden from relatives
until it is given a section.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from plan_service.domain import event_types
from plan_service.domain.event_types import ALWAYS, FULL, RECORD

log = logging.getLogger("careplan.projection")
__all__ = ["FULL", "event_details", "event_filter", "event_visible", "plan_fields", "shows_recorded_by"]

# plan representation field -> the section that shows it
PLAN_FIELDS: dict[str, str] = {
    "id": ALWAYS, "version": ALWAYS, "opened_at": ALWAYS, "updated_at": ALWAYS, "closed": ALWAYS,
    "patient_id": RECORD, "service_levels": RECORD, "age_band": RECORD, "birth_date": RECORD,
    "what_matters": "what_matters", "goals": "goals", "information_given": "information",
    "participants": "participants", "relative_consents": "participants", "coordinator": "participants",
    "evaluations": "evaluations", "triangle_meetings": "meetings",
}
# Who recorded an event (clinicians' and coordinators' ids) belongs to the record.
RECORDED_BY = RECORD


def shows(section: str, sections: frozenset[str]) -> bool:
    return section == ALWAYS or section in sections


def plan_fields(sections: frozenset[str]) -> tuple[str, ...] | None:
    """The plan representation's fields these sections show (None: all of them)."""
    if sections >= FULL:
        return None
    return tuple(name for name, section in PLAN_FIELDS.items() if shows(section, sections))


def event_visible(event_type: str, sections: frozenset[str]) -> bool:
    """Whether these sections show events of this type; an unregistered type: to nobody."""
    known = event_types.BY_NAME.get(event_type)
    if known is None:
        log.warning("an event of a type the registry does not know is shown to nobody",
                    extra={"reason": "unregistered event type"})
        return False
    return shows(known.section, sections)


def event_filter(sections: frozenset[str]) -> Callable[[str], bool]:
    """A test on event types for the timeline."""
    return lambda event_type: event_visible(event_type, sections)


def event_details(event_type: str, details: dict[str, Any], sections: frozenset[str]) -> dict[str, Any]:
    """The fields of one event these sections show (nothing of an invisible event)."""
    known = event_types.BY_NAME.get(event_type)
    if known is None or not shows(known.section, sections):
        return {}
    return {k: v for k, v in details.items() if shows(known.field_section(k), sections)}


def shows_recorded_by(sections: frozenset[str]) -> bool:
    return shows(RECORDED_BY, sections)
