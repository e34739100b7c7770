"""/v1/prompts: a coordinator's inbox. A coordinator sees only their own prompts: another's
prompt answers 404, as if it did not exist."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import Schema, fields, validate

from careplan_shared.authentication import authenticate
from notification_service.application.service import ALL, Notifications, PromptClosed, PromptNotFound
from notification_service.domain.prompts import PromptStatus, Reason

blp = Blueprint("prompts", __name__, url_prefix="/v1/prompts",
                description="Prompts for the coordinator: what to do, for which plan, by when")

REASONS: dict[str, str] = {
    Reason.EVALUATION_DUE: "Evaluate the individual plan with the patient (scheduled evaluation is due)",
    Reason.EVALUATION_SUGGESTED: "No evaluation for a long time: schedule one with the patient",
    Reason.TRIANGLE_MEETING_SUGGESTED:
        "Suggest a triangle meeting (municipality, specialist service, the young person)",
    Reason.NO_SHOW_FOLLOW_UP: "The patient did not come to the triangle meeting: follow up as agreed",
    Reason.WRITTEN_INFORMATION_DUE: "Information was given only orally: give it in writing too",
    Reason.CONSENT_EXPIRING: "A relative's consent is about to expire: talk with the patient about it",
    Reason.PLAN_INACTIVE: "Nobody has recorded anything in this plan for a long time: take it up with the patient",
}
INBOX_ROLES = frozenset({"coordinator"})


class InboxQuery(Schema):
    status = fields.String(load_default=PromptStatus.OPEN.value,
                           validate=validate.OneOf((*(status.value for status in PromptStatus), ALL)))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))


class HistoryEntryOut(Schema):
    kind = fields.String(metadata={"description": "what happened: reassigned"})
    at = fields.String(metadata={"description": "when (ISO 8601)"})
    from_ = fields.String(data_key="from", attribute="from", allow_none=True,
                          metadata={"description": "the recipient before (coordinator id; null: nobody)"})
    to = fields.String(allow_none=True, metadata={"description": "the recipient after (coordinator id)"})


class PromptOut(Schema):
    id = fields.String()
    plan_id = fields.String()
    reason = fields.String(attribute="rule", metadata={"description": "reason category"})
    reason_text = fields.Method("_reason_text")
    subject = fields.String()
    status = fields.String()
    due_at = fields.DateTime()
    escalated = fields.Method("_escalated")
    escalated_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()
    acknowledged_at = fields.DateTime(allow_none=True)
    resolved_at = fields.DateTime(allow_none=True)
    details = fields.Dict(metadata={"description": "e.g. the no-show strategy agreed in advance"})
    plan_url = fields.Method("_plan_url")
    history = fields.List(fields.Nested(HistoryEntryOut), metadata={
        "description": "moves of the prompt between coordinators, oldest first (ids and times only)"})

    def _reason_text(self, prompt: Any) -> str:
        return REASONS.get(prompt.rule, prompt.rule)

    def _escalated(self, prompt: Any) -> bool:
        return prompt.escalated_at is not None

    def _plan_url(self, prompt: Any) -> str:
        return f"{current_app.extensions['careplan'].config.plan_service_url}/v1/plans/{prompt.plan_id}"


class InboxPage(Schema):
    items = fields.List(fields.Nested(PromptOut))


def _coordinator() -> str:
    principal = authenticate()
    if principal.role not in INBOX_ROLES:
        abort(403, message="only coordinators have an inbox of prompts")
    return principal.subject


def _notifications() -> Notifications:
    return current_app.extensions["careplan"].notifications


def _coordinator_first(view):
    """401/403 before anything of the request is parsed (same order as plan-service)."""
    import functools

    @functools.wraps(view)
    def checked(*args: Any, **kwargs: Any) -> Any:
        _coordinator()
        return view(*args, **kwargs)

    return checked


@blp.route("")
class Inbox(MethodView):
    @_coordinator_first
    @blp.arguments(InboxQuery, location="query", unknown=None)
    @blp.response(200, InboxPage)
    @blp.doc(security=[{"bearer": []}])
    def get(self, args: dict[str, Any]):
        """My prompts, soonest due first (default: the open ones)"""
        return {"items": _notifications().inbox(_coordinator(), args["status"], args["limit"])}


@blp.route("/<string:prompt_id>")
class OnePrompt(MethodView):
    @_coordinator_first
    @blp.response(200, PromptOut)
    @blp.doc(security=[{"bearer": []}])
    def get(self, prompt_id: str):
        """One of my prompts"""
        try:
            return _notifications().prompt_for(prompt_id, _coordinator())
        except PromptNotFound:
            abort(404, message="no such prompt in your inbox")


@blp.route("/<string:prompt_id>/ack")
class Acknowledge(MethodView):
    @_coordinator_first
    @blp.response(200, PromptOut)
    @blp.doc(security=[{"bearer": []}])
    def post(self, prompt_id: str):
        """Acknowledge a prompt: I have seen it and take it from here (repeating is harmless)"""
        try:
            return _notifications().acknowledge(prompt_id, _coordinator())
        except PromptNotFound:
            abort(404, message="no such prompt in your inbox")
        except PromptClosed:
            abort(409, message="the prompt resolved itself: the plan already shows it was dealt with")
