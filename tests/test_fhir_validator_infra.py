"""Smoke tests of the FHIR R4 validation infrastructure (infra/fhir + tests/fhir_validation.py)
that issue 12's export tests stand on: HAPI FHIR's validator accepts hand-written valid R4
resources and reports the errors it must, where later tests will look for them.

Everything is validated in one call (one JVM, ~10 s) by the module fixture."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_validation import FhirValidatorUnavailable, errors, validate

pytestmark = pytest.mark.integration

DIV = '<div xmlns="http://www.w3.org/1999/xhtml"><p>Gå en tur hver dag</p></div>'
PATIENT_URL = "urn:uuid:0b7c1f9e-2f6a-4c6e-9a43-2d4f0e2d8a11"
GOAL = {
    "resourceType": "Goal",
    "id": "goal-1",
    "text": {"status": "generated", "div": DIV},
    "lifecycleStatus": "active",
    "description": {"text": "Gå en tur hver dag"},
    "subject": {"reference": PATIENT_URL},
}
PATIENT = {"resourceType": "Patient", "id": "patient-1", "text": {"status": "generated", "div": DIV}}


def collection(*resources: dict[str, Any]) -> dict[str, Any]:
    urls = [PATIENT_URL, "urn:uuid:5d1f3c0a-8d1e-4a8b-b1d2-7c0e9f6a3b22", "urn:uuid:9a0e6b1c-3c2d-4e5f-8a7b-6c5d4e3f2a10"]
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"fullUrl": url, "resource": r} for url, r in zip(urls, resources, strict=False)]}


def without(resource: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != key}


RESOURCES = {
    "valid goal": GOAL,
    "valid bundle": collection(PATIENT, GOAL),
    "goal without lifecycleStatus": without(GOAL, "lifecycleStatus"),
    "goal with unknown element": {**GOAL, "colour": "blå"},
    "goal with unknown nested element": {**GOAL, "description": {"text": "x", "colour": "blå"}},
    "goal with code outside its required binding": {**GOAL, "lifecycleStatus": "nesten-ferdig"},
    "bundle with goal without lifecycleStatus": collection(PATIENT, without(GOAL, "lifecycleStatus")),
}


@pytest.fixture(scope="module")
def results() -> dict[str, list[dict[str, str]]]:
    return validate(RESOURCES)


def test_every_resource_has_a_result(results):
    assert set(results) == set(RESOURCES)
    for messages in results.values():
        for m in messages:
            assert set(m) == {"severity", "location", "message"}
            assert m["severity"] in {"fatal", "error", "warning", "information"}


@pytest.mark.parametrize("name", ["valid goal", "valid bundle"])
def test_valid_resources_have_no_errors(results, name):
    assert errors(results[name]) == [], results[name]


def test_missing_required_element_is_an_error_naming_it(results):
    # HAPI locates a missing element at its parent (here the resource: "Goal") and names the
    # element itself in the message ("Goal.lifecycleStatus: minimum required = 1, ...").
    found = errors(results["goal without lifecycleStatus"])
    assert [m["location"] for m in found if "Goal.lifecycleStatus" in m["message"]] == ["Goal"], found


def test_unknown_element_is_an_error(results):
    found = errors(results["goal with unknown element"])
    assert [m["location"] for m in found if "colour" in m["message"]] == ["Goal"], found
    nested = errors(results["goal with unknown nested element"])
    assert [m["location"] for m in nested if "colour" in m["message"]] == ["Goal.description"], nested


def test_code_outside_required_binding_is_an_error_offline(results):
    # GoalLifecycleStatus is a required binding: the R4 value sets in the jar decide, no server.
    found = errors(results["goal with code outside its required binding"])
    assert any(m["location"] == "Goal.lifecycleStatus" for m in found), found


def test_error_inside_a_bundle_is_located_at_its_entry(results):
    found = errors(results["bundle with goal without lifecycleStatus"])
    assert any(m["location"].startswith("Bundle.entry[1].resource") and "Goal.lifecycleStatus" in m["message"]
               for m in found), found


def test_missing_java_is_a_clear_failure_not_a_skip(monkeypatch):
    monkeypatch.setenv("JAVA", "/nonexistent/java")
    with pytest.raises(FhirValidatorUnavailable, match="java"):
        validate({"valid goal": GOAL})
