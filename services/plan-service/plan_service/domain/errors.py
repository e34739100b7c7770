"""Domain errors. The API maps Conflict to 409 and Invalid to 422 (naming the field)."""


class DomainError(Exception):
    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class Conflict(DomainError):
    """The event contradicts the plan's current state (closed plan, goal already abandoned...)."""


class Invalid(DomainError):
    """The event refers to something the plan does not have, or its values do not fit together."""


class PlanNotFound(Exception):
    pass
