"""Domain errors, one kind of mistake each (the README's table says which status each gets):

- ``Invalid`` (422): the event refers to something the plan does not have, or its values or
  times do not fit the plan (before it was opened, held before it was scheduled...).
- ``Conflict`` (409): the event is well-formed and refers to what exists, but the plan's
  current state forbids it (closed plan, goal already abandoned, a second open plan...).
- ``Forbidden`` (403): this recorder may not record this event (consent is the patient's).
"""


class DomainError(Exception):
    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class Conflict(DomainError):
    """The event contradicts the plan's current state (closed plan, goal already abandoned...)."""


class Invalid(DomainError):
    """The event refers to something the plan does not have, or its values do not fit together."""


class Forbidden(DomainError):
    """Whoever records the event may not record it (e.g. consent by a bare system account)."""


class PlanNotFound(Exception):
    pass
