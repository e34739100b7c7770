"""`notification-service dead-letters [list|retry]` against a real SQLite store: in-process
through main(argv), and as the installed command in a subprocess (with the fixed code)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from notification_service.bootstrap import bootstrap
from notification_service.config import Config
from notification_service.domain import view as view_module
from notification_service.web.cli import main


def dead_letter_one_assignment(data_dir: Path, clock, stream, monkeypatch):
    """A plan whose coordinator assignment failed (a bug, since fixed), plus one poison record."""
    notifications = bootstrap(Config(data_dir=data_dir), clock=clock, with_workers=False).notifications
    real = view_module._HANDLERS["CoordinatorAssigned"]

    def broken(*args):
        raise RuntimeError("a bug")

    monkeypatch.setitem(view_module._HANDLERS, "CoordinatorAssigned", broken)
    s = stream()
    for e in (s.wire("PlanOpened", service_level="municipal", age_band="18-25", birth_date=None),
              s.wire("CoordinatorAssigned", coordinator_id="k1", service_level="specialist")):
        notifications.handle("feed", 0, e["position"], e)
    monkeypatch.setitem(view_module._HANDLERS, "CoordinatorAssigned", real)
    return notifications


@pytest.fixture
def env(tmp_path, monkeypatch):
    root = logging.getLogger()  # main() configures logging: put it back afterwards
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    for name in list(os.environ):
        if name.startswith(("NOTIFICATION_", "CAREPLAN_", "KAFKA_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CAREPLAN_DATA_DIR", str(tmp_path))
    return tmp_path


def test_retry_through_main(env, clock, stream, monkeypatch, capsys):
    notifications = dead_letter_one_assignment(env, clock, stream, monkeypatch)
    assert main(["dead-letters"]) == 0
    assert "error: RuntimeError" in capsys.readouterr().out
    assert main(["dead-letters", "retry"]) == 0
    assert capsys.readouterr().out.strip() == "retried 1, resolved 1, still failing 0"
    assert "triangle_meeting_suggested" in [p.rule for p in notifications.inbox("k1")]  # the assignment is in
    assert main(["dead-letters"]) == 0 and capsys.readouterr().out == ""
    assert main(["dead-letters", "list", "--all"]) == 0 and "'resolved'" in capsys.readouterr().out


def test_retry_as_a_command(env, clock, stream, monkeypatch):
    notifications = dead_letter_one_assignment(env, clock, stream, monkeypatch)
    notifications.handle("kafka", 0, 1, b"\x00not json at all")
    command = shutil.which("notification-service", path=str(Path(sys.executable).parent))
    assert command
    child_env = {"PATH": os.environ["PATH"], "CAREPLAN_DATA_DIR": str(env), "HOME": str(env)}
    done = subprocess.run([command, "dead-letters", "retry"], env=child_env, capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.strip() == "retried 2, resolved 1, still failing 1"
    assert done.returncode == 1  # something still needs attention
    assert "triangle_meeting_suggested" in [p.rule for p in notifications.inbox("k1")]  # the assignment is in
    [still] = notifications.dead_letters()
    assert still["reason"].startswith("undecodable") and still["source"] == "kafka"
