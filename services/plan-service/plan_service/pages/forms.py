"""The patient's forms: posted fields -> the same event the API would take, checked by the
API's own request schemas (built from the event type registry), so a page accepts exactly
what the API accepts. Refusals are said in plain words next to the field they concern.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from flask_babel import gettext as _
from marshmallow import ValidationError

from plan_service.api import schemas
from plan_service.domain.errors import Conflict, DomainError
from plan_service.pages.present import local_day_end

GENERAL = "_form"  # errors not about one field


@dataclass
class FormErrors:
    """A refused form: which form (and for whom), its messages by field, what was posted."""

    form: str
    key: str | None = None  # e.g. the relative a consent form is about
    fields: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)

    def about(self, form: str, key: str | None = None) -> bool:
        return self.form == form and self.key == key


def what_matters(form: Any, language: str) -> dict[str, Any]:
    text = (form.get("text") or "").replace("\r\n", "\n")
    return {"type": "WhatMattersRecorded", "text": text, "language": language}


def consent(form: Any) -> dict[str, Any]:
    return {"type": "RelativeConsentGiven", "relative_id": form.get("relative_id") or "",
            "scope": form.getlist("scope"), "valid_until": _until(form.get("valid_until"))}


def withdrawal(form: Any) -> dict[str, Any]:
    return {"type": "RelativeConsentWithdrawn", "relative_id": form.get("relative_id") or ""}


_NORWEGIAN_DAY = re.compile(r"^\s*(\d{1,2})\.(\d{1,2})\.(\d{4})\s*$")


def _until(value: str | None) -> str | None:
    """A day from a date field (YYYY-MM-DD, or 12.03.2027 where the browser has no date
    picker) -> the end of that day in Europe/Oslo; anything else as it is, for the schema
    to refuse."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        found = date.fromisoformat(text)
    except ValueError:
        match = _NORWEGIAN_DAY.match(text)
        if not match:
            return text
        try:
            found = date(int(match.group(3)), int(match.group(2)), int(match.group(1)))
        except ValueError:
            return text
    try:
        return local_day_end(found).isoformat()
    except (OverflowError, ValueError):
        return text


def load(body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The API's request schema for the event (ValidationError names the fields)."""
    return schemas.load_events(body)


# -- refusals in plain words -------------------------------------------------------------

def _flatten(raw: Any) -> str:
    if isinstance(raw, dict):
        return " ".join(_flatten(v) for v in raw.values())
    if isinstance(raw, list | tuple):
        return " ".join(_flatten(v) for v in raw)
    return str(raw)


def _empty(name: str) -> str:
    if name == "scope":
        return _("Choose at least one part of your plan.")
    if name == "text":
        return _("Please write something first.")
    return _("Please fill this in.")


def validation_messages(error: ValidationError, body: dict[str, Any]) -> dict[str, str]:
    """The schema's messages (English, for developers) -> one plain sentence per field, told
    apart by what was posted where the schema's words are the same for two mistakes."""
    messages = error.messages if isinstance(error.messages, dict) else {GENERAL: error.messages}
    result: dict[str, str] = {}
    for name, raw in messages.items():
        text = _flatten(raw)
        value = body.get(name)
        key = name if name in ("text", "scope", "valid_until", "relative_id") else GENERAL
        length = re.search(r"(?:Longer than maximum length|Length must be between \d+ and) (\d+)", text)
        if value is None or (isinstance(value, str | list) and not "".join(value).strip()):
            message = _empty(name)
        elif length is not None and isinstance(value, str) and len(value) > int(length.group(1)):
            message = _("That is too long. Please keep it under %(count)s characters.", count=length.group(1))
        elif "control or invalid characters" in text:
            message = _("Please use only ordinary letters, numbers and punctuation.")
        elif "must be in the future" in text:
            message = _("Choose a day that has not passed yet.")
        elif "years ahead" in text:
            message = _("Choose a day at most ten years ahead.")
        elif "Not a valid" in text and name == "valid_until":
            message = _("Write the date as day, month and year, for example 31.12.2027.")
        elif "Must be one of" in text or "Not a valid" in text or "Length must be between" in text:
            message = _("Choose from the list.")
        else:
            message = _("This could not be used.")
        result.setdefault(key, message)
    return result


def rule_messages(form: str, error: DomainError) -> dict[str, str]:
    """A rule of the plan that refused the form (Invalid, Conflict) -> a plain sentence."""
    name = error.field
    if name is None and isinstance(error, Conflict):
        return {GENERAL: _("The plan is closed, so nothing more can be added.")}
    if name == "relative_id":
        if isinstance(error, Conflict):
            return {GENERAL: _("This consent has already been withdrawn.")}
        if form == "withdraw":
            return {GENERAL: _("There is no consent to withdraw.")}
        return {GENERAL: _("This person no longer takes part in your plan.")}
    if name == "valid_until":
        return {"valid_until": _("Choose a day that has not passed yet.")}
    if name == "scope":
        return {"scope": _empty("scope")}
    if name == "text":
        return {"text": _empty("text")}
    return {GENERAL: _("This could not be saved.")}


def posted_values(body: dict[str, Any], form: Any) -> dict[str, Any]:
    """What to show again in a refused form: what the person typed or chose."""
    values = {k: v for k, v in body.items() if k != "type"}
    if "valid_until" in body:
        values["valid_until"] = (form.get("valid_until") or "").strip()
    return values


def today_value() -> str:
    """Today in Europe/Oslo (the earliest day a date field offers)."""
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo("Europe/Oslo")).date().isoformat()
