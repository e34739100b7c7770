"""FHIR R4 validation for tests (issue 12): HAPI FHIR's validator, the reference implementation,
run offline from infra/fhir (built by Maven on first use; `make test` builds it beforehand).

One call of ``validate`` is one JVM: ~10 s to load the validator, then ~10-30 ms a resource.
Collect everything a test module exports and validate it in one call (a module-scoped fixture),
not one resource at a time.

A missing validator (no Java 17+, no Maven for the first build, a failed build) raises
``FhirValidatorUnavailable``: a test that needs the validator fails, never skips.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from careplan_testing import ROOT

VALIDATE = ROOT / "infra" / "fhir" / "validate"
ERROR_SEVERITIES = frozenset({"error", "fatal"})


class FhirValidatorUnavailable(RuntimeError):
    """infra/fhir/validate could not run (the tool failed, not the resources)."""


def validate(resources: dict[str, dict[str, Any]], timeout: float = 900.0) -> dict[str, list[dict[str, str]]]:
    """Validate each resource (a FHIR R4 resource as a JSON-ready dict) against the R4 core
    definitions; messages per name, each ``{"severity": "fatal|error|warning|information",
    "location": "Goal.target[0]", "message": "..."}``. Names are free text (not file names).
    ``timeout`` covers a first build (Maven fetches ~150 MB) as well."""
    if not resources:
        return {}
    if shutil.which("java") is None:
        raise FhirValidatorUnavailable("java is not on PATH: the FHIR validator (infra/fhir) needs Java 17+ "
                                       "(Debian: apt-get install -y openjdk-17-jdk-headless maven)")
    with tempfile.TemporaryDirectory(prefix="fhir-validate-") as tmp:
        # Numbered files: names may hold anything ('/', spaces, Norwegian letters).
        paths: dict[str, str] = {}
        for number, (name, resource) in enumerate(resources.items()):
            path = Path(tmp) / f"{number:06d}.json"
            path.write_text(json.dumps(resource, ensure_ascii=False), encoding="utf-8")
            paths[name] = str(path)
        try:
            done = subprocess.run([str(VALIDATE), *paths.values()], capture_output=True, text=True,
                                  timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise FhirValidatorUnavailable(f"{VALIDATE} could not run: {e}") from e
    if done.returncode != 0:
        raise FhirValidatorUnavailable(f"{VALIDATE} failed (exit {done.returncode}); is Java 17+ and Maven "
                                       f"installed? Build log: infra/fhir/target/mvn-build.log\n"
                                       f"{done.stderr[-3000:]}")
    try:
        files = json.loads(done.stdout)["files"]
        return {name: files[path]["messages"] for name, path in paths.items()}
    except (ValueError, KeyError, TypeError) as e:
        raise FhirValidatorUnavailable(f"{VALIDATE} printed no result for every file ({e!r}): "
                                       f"{done.stdout[:1000]!r}\n{done.stderr[-2000:]}") from e


def errors(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The messages that make a resource invalid (severity error or fatal)."""
    return [m for m in messages if m["severity"] in ERROR_SEVERITIES]


def assert_valid(resources: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, str]]]:
    """Validate and fail with every error of every resource listed (warnings are allowed);
    the messages per name when there are none."""
    result = validate(resources)
    found = {name: errors(messages) for name, messages in result.items() if errors(messages)}
    assert not found, "FHIR R4 validation errors:\n" + "\n".join(
        f"  {name}: [{m['severity']}] {m['location']}: {m['message']}"
        for name, ms in found.items() for m in ms)
    return result
