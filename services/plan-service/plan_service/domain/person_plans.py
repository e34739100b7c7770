"""PersonPlans: the plans a person was added to as a relative, or assigned to as coordinator.

The pages list a relative's and a coordinator's plans from it (the API never needed to). A
small aggregate per person whose id is derived from the person id (like PatientPlans), saved
in the same atomic write as the plan event that puts the person in the plan, so it is never
behind or ahead of the plans. It holds plan ids only, never plan content.

It says where a person was put, not what they may see now: whoever reads a plan listed here
is still asked the access policy (a relative whose consent ended, a coordinator replaced by
another). A coordinator replaced by another leaves the coordinator's list; a relative stays
listed after being removed or after the consent ended, so the relative can be told that
access has ended.
"""

from __future__ import annotations

import uuid

from eventsourcing.domain import Aggregate

NAMESPACE = uuid.UUID("5b8f0d3e-9c1a-4e7b-b2d4-3f6a1c8e7d90")
AS_RELATIVE = "relative"
AS_COORDINATOR = "coordinator"
CAPACITIES = (AS_RELATIVE, AS_COORDINATOR)


def _topic(name: str) -> str:
    return f"careplan.PersonPlans.{name}"


class PersonPlans(Aggregate):
    TOPIC = "careplan.PersonPlans"

    class Event(Aggregate.Event):
        pass

    class Created(Event, Aggregate.Created):
        TOPIC = _topic("Created")

    class PlanJoined(Event):
        """The person was added to the plan as a relative, or assigned as its coordinator."""

        TOPIC = _topic("PlanJoined")
        plan_id: uuid.UUID
        capacity: str  # AS_RELATIVE | AS_COORDINATOR

        def apply(self, index: PersonPlans) -> None:
            plans = index.plans[self.capacity]
            if self.plan_id not in plans:
                plans.append(self.plan_id)

    class PlanLeft(Event):
        """The person no longer has this capacity in the plan (a coordinator replaced)."""

        TOPIC = _topic("PlanLeft")
        plan_id: uuid.UUID
        capacity: str

        def apply(self, index: PersonPlans) -> None:
            plans = index.plans[self.capacity]
            if self.plan_id in plans:
                plans.remove(self.plan_id)

    def __init__(self) -> None:
        self.plans: dict[str, list[uuid.UUID]] = {capacity: [] for capacity in CAPACITIES}

    @staticmethod
    def id_for(person_id: str) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, person_id)

    @classmethod
    def start(cls, person_id: str) -> PersonPlans:
        return cls._create(cls.Created, id=cls.id_for(person_id))

    def as_relative(self) -> list[uuid.UUID]:
        """Plan ids, in the order the person was added to them."""
        return list(self.plans[AS_RELATIVE])

    def as_coordinator(self) -> list[uuid.UUID]:
        return list(self.plans[AS_COORDINATOR])

    def joined(self, plan_id: uuid.UUID, capacity: str) -> bool:
        """Record that the person joined the plan in this capacity; False (nothing recorded)
        if the index already lists it."""
        if capacity not in CAPACITIES:
            raise ValueError(f"capacity must be one of {', '.join(CAPACITIES)}")
        if plan_id in self.plans[capacity]:
            return False
        self.trigger_event(self.PlanJoined, plan_id=plan_id, capacity=capacity)
        return True

    def left(self, plan_id: uuid.UUID, capacity: str) -> bool:
        if plan_id not in self.plans.get(capacity, ()):
            return False
        self.trigger_event(self.PlanLeft, plan_id=plan_id, capacity=capacity)
        return True
