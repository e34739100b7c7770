"""PatientPlans: which individual plan of a patient is open. One patient has one open plan.

A small aggregate per patient whose id is derived from the patient id, saved in the same
atomic write as the plan it opens or closes: two plans opened for one patient at once
collide on its version, so exactly one is stored. It holds plan ids only.
"""

from __future__ import annotations

import uuid

from eventsourcing.domain import Aggregate

from plan_service.domain.errors import Conflict

NAMESPACE = uuid.UUID("8d0f3b5e-52a4-4f3e-9a0e-7c1f2a6b4d21")


def _topic(name: str) -> str:
    return f"careplan.PatientPlans.{name}"


class PatientPlans(Aggregate):
    TOPIC = "careplan.PatientPlans"

    class Event(Aggregate.Event):
        pass

    class Created(Event, Aggregate.Created):
        TOPIC = _topic("Created")

    class PlanOpened(Event):
        TOPIC = _topic("PlanOpened")
        plan_id: uuid.UUID

        def apply(self, index: PatientPlans) -> None:
            index.open_plan_id = self.plan_id

    class PlanClosed(Event):
        TOPIC = _topic("PlanClosed")
        plan_id: uuid.UUID

        def apply(self, index: PatientPlans) -> None:
            if index.open_plan_id == self.plan_id:
                index.open_plan_id = None

    def __init__(self) -> None:
        self.open_plan_id: uuid.UUID | None = None

    @staticmethod
    def id_for(patient_id: str) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, patient_id)

    @classmethod
    def start(cls, patient_id: str) -> PatientPlans:
        return cls._create(cls.Created, id=cls.id_for(patient_id))

    def opened(self, plan_id: uuid.UUID) -> None:
        if self.open_plan_id is not None:
            raise OpenPlanExists(self.open_plan_id)
        self.trigger_event(self.PlanOpened, plan_id=plan_id)

    def closed(self, plan_id: uuid.UUID) -> None:
        self.trigger_event(self.PlanClosed, plan_id=plan_id)


class OpenPlanExists(Conflict):
    """The patient already has an open plan: add to it, or close it first (-> 409)."""

    def __init__(self, plan_id: uuid.UUID):
        super().__init__(f"the patient already has an open individual plan ({plan_id}); "
                         "record events in it, or close it first", "patient_id")
        self.plan_id = plan_id
