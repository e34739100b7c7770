"""Application and domain errors -> problem+json responses."""

from __future__ import annotations

import concurrent.futures
import logging
from typing import Any

from eventsourcing.persistence import InterfaceError as StoreInterfaceError
from eventsourcing.persistence import OperationalError as StoreOperationalError
from flask import Flask, g, request
from marshmallow import ValidationError

from careplan_shared.problem import problem
from plan_service.application.plans import (
    ConcurrentWrite,
    EventRejected,
    IdempotencyKeyReused,
    VersionMismatch,
)
from plan_service.domain.errors import Conflict, Forbidden, PlanNotFound
from plan_service.domain.patient_plans import OpenPlanExists

TYPE = "https://careplan.example/problems/"
RETRY_AFTER_SECONDS = "2"
log = logging.getLogger("careplan.errors")


def _unavailable_errors() -> tuple[type[Exception], ...]:
    """The store could not be reached or did not answer in time: the library's wrapped errors
    (a lost connection, no connection from the pool, a statement timeout), psycopg's own (the
    access log's and the relay's connections), and a write the group committer did not answer."""
    import psycopg

    from plan_service.adapters.persistence import StoreUnavailable

    return (StoreUnavailable, StoreOperationalError, StoreInterfaceError, psycopg.OperationalError,
            psycopg.InterfaceError, concurrent.futures.TimeoutError)


def install(app: Flask) -> None:
    def _unavailable(e: Exception):
        # by type only: the text of a database error can quote the statement's parameters
        log.warning("the store is unavailable: answered 503", extra={"error_type": type(e).__name__})
        if request.blueprint == "pages":  # a page: the pages' HTML error page
            from flask import make_response

            from careplan_shared.pages import error_page

            page = make_response(error_page(503))
            page.headers["Retry-After"] = RETRY_AFTER_SECONDS
            return page
        return problem(503, "Service Unavailable", "The store cannot be reached just now. Nothing was "
                       "shown; a write may or may not have been stored (retry it with its "
                       "Idempotency-Key, or read the plan again).", type_=TYPE + "store-unavailable",
                       headers={"Retry-After": RETRY_AFTER_SECONDS})

    for error in _unavailable_errors():
        app.register_error_handler(error, _unavailable)

    @app.errorhandler(PlanNotFound)
    def _not_found(_: PlanNotFound):
        return problem(404, "Not Found", "No such plan (or it did not exist at that time).",
                       type_=TYPE + "plan-not-found")

    @app.errorhandler(VersionMismatch)
    def _stale(e: VersionMismatch):
        return problem(412, "Precondition Failed",
                       f"If-Match is stale: the plan is at version {e.current}. Nothing was stored.",
                       type_=TYPE + "stale-version", current_version=e.current,
                       headers={"ETag": f'"{e.current}"'})

    @app.errorhandler(ConcurrentWrite)
    def _conflict(_: ConcurrentWrite):
        return problem(409, "Conflict",
                       "Another write to this plan was stored first. Nothing was stored; "
                       "read the plan again and retry.", type_=TYPE + "concurrent-write")

    @app.errorhandler(IdempotencyKeyReused)
    def _key_reused(_: IdempotencyKeyReused):
        return problem(422, "Unprocessable Content",
                       "This Idempotency-Key was already used for a different request.",
                       type_=TYPE + "idempotency-key-reused",
                       errors={"Idempotency-Key": ["already used for a different request"]})

    @app.errorhandler(EventRejected)
    def _rejected(e: EventRejected):
        error = e.error
        field_errors: dict[str, Any] = {error.field or "_schema": [error.message]}
        if getattr(e, "in_list", False):
            field_errors = {str(e.index): field_errors}
        if isinstance(error, Forbidden):
            return problem(403, "Forbidden", f"{error.message}. Nothing was stored.",
                           type_=TYPE + "recorder-not-allowed", index=e.index)
        if isinstance(error, OpenPlanExists):
            # The answer tells the caller the patient has a plan: that is a look at it, logged.
            if g.get("principal") is not None:
                g.access_attempt = ("plan.create", str(error.plan_id), g.principal, None)
            return problem(409, "Conflict", f"{error.message}. Nothing was stored.",
                           type_=TYPE + "open-plan-exists", errors=field_errors, index=e.index,
                           open_plan_id=str(error.plan_id))
        if isinstance(error, Conflict):
            return problem(409, "Conflict", f"{error.message}. Nothing was stored.",
                           type_=TYPE + "plan-state", errors=field_errors, index=e.index)
        return problem(422, "Unprocessable Content", f"{error.message}. Nothing was stored.",
                       type_=TYPE + "plan-rule", errors=field_errors, index=e.index)

    @app.errorhandler(ValidationError)
    def _invalid(e: ValidationError):
        return problem(422, "Unprocessable Content",
                       "The request is not valid; see errors. Nothing was stored.",
                       type_=TYPE + "validation", errors=e.normalized_messages())
