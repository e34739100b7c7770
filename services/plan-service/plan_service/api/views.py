"""Access-log entries in plain words. (What a reader may see of a plan: projection.py.)"""

from __future__ import annotations

from typing import Any

from plan_service.adapters.access_log import AccessEntry

# action -> (what was done, what was tried), in plain words for the patient
WHAT: dict[str, tuple[str, str]] = {
    "read_plan": ("read the plan", "read the plan"),
    "read_plan_as_of": ("read an earlier version of the plan", "read an earlier version of the plan"),
    "read_plan_fhir": ("read the plan as a FHIR bundle", "read the plan as a FHIR bundle"),
    "read_plan_fhir_as_of": ("read an earlier version of the plan as a FHIR bundle",
                             "read an earlier version of the plan as a FHIR bundle"),
    "read_timeline": ("read the plan's timeline", "read the plan's timeline"),
    "read_access_log": ("read this access log", "read this access log"),
    "write_events": ("recorded changes in the plan", "record changes in the plan"),
    "open_plan": ("opened the plan", "open the plan"),
}
RESULTS = {"denied": "not allowed", "not_found": "not found", "rejected": "refused",
           "unavailable": "nothing was shown, the access log could not be written"}


def access_entry(entry_id: int, e: AccessEntry) -> dict[str, Any]:
    who = f"{e.role} {e.subject}"
    if e.on_behalf_of and e.role == "integration":
        who = f"clinician {e.on_behalf_of} (through the EPR system {e.subject})"
    done, tried = WHAT.get(e.action, (e.action, e.action))
    what = done if e.result == "allowed" else f"tried to {tried}: {RESULTS.get(e.result, e.result)}"
    return {"id": entry_id, "at": e.at, "who": who, "role": e.role, "subject": e.subject,
            "on_behalf_of": e.on_behalf_of if e.role == "integration" else None,
            "action": e.action, "what": what, "result": e.result}
