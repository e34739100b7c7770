"""PLAN_SERVICE_ENCRYPTION_KEY(_FILE): a bad key stops start-up with an error that names the
variable and never shows the key; a good one reaches the eventsourcing library."""

from __future__ import annotations

import base64

import pytest

from careplan_shared.config import ConfigError
from plan_service.adapters.persistence import CIPHER_TOPIC, eventsourcing_env
from plan_service.config import VARIABLES, Config
from plan_service.web.cli import main

KEY = base64.b64encode(bytes(range(32))).decode()


@pytest.mark.parametrize("bad", [
    "not base64!!",
    base64.b64encode(b"x" * 31).decode(),  # wrong length
    base64.b64encode(b"x" * 8).decode(),
    base64.b64encode(b"x" * 64).decode(),
    KEY[:-1],  # broken padding
    base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode(),  # URL-safe alphabet is not what the library reads
    "ключ",
])
def test_a_bad_key_is_a_config_error_naming_the_variable(bad):
    with pytest.raises(ConfigError, match="PLAN_SERVICE_ENCRYPTION_KEY") as error:
        Config.from_env({"PLAN_SERVICE_ENCRYPTION_KEY": bad})
    assert bad not in str(error.value)


@pytest.mark.parametrize("size", [16, 24, 32])
def test_a_good_key_reaches_the_library(size, tmp_path):
    key = base64.b64encode(bytes(size)).decode()
    config = Config.from_env({"PLAN_SERVICE_ENCRYPTION_KEY": key, "PLAN_SERVICE_PERSISTENCE": "memory",
                              "CAREPLAN_DATA_DIR": str(tmp_path)})
    env = eventsourcing_env(config)
    assert env["CIPHER_TOPIC"] == CIPHER_TOPIC and env["CIPHER_KEY"] == key
    assert key not in repr(config)


def test_no_key_no_cipher(tmp_path):
    env = eventsourcing_env(Config.from_env({"PLAN_SERVICE_PERSISTENCE": "memory"}))
    assert "CIPHER_TOPIC" not in env and "CIPHER_KEY" not in env


def test_the_key_from_a_file(tmp_path):
    path = tmp_path / "key"
    path.write_text(KEY + "\n")
    assert Config.from_env({"PLAN_SERVICE_ENCRYPTION_KEY_FILE": str(path)}).encryption_key == KEY
    path.write_text("short")
    with pytest.raises(ConfigError, match="PLAN_SERVICE_ENCRYPTION_KEY_FILE"):
        Config.from_env({"PLAN_SERVICE_ENCRYPTION_KEY_FILE": str(path)})
    with pytest.raises(ConfigError, match="PLAN_SERVICE_ENCRYPTION_KEY_FILE cannot be read"):
        Config.from_env({"PLAN_SERVICE_ENCRYPTION_KEY_FILE": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match="not both"):
        Config.from_env({"PLAN_SERVICE_ENCRYPTION_KEY_FILE": str(path), "PLAN_SERVICE_ENCRYPTION_KEY": KEY})


def test_the_variables_are_declared():
    assert {"PLAN_SERVICE_ENCRYPTION_KEY", "PLAN_SERVICE_ENCRYPTION_KEY_FILE"} <= set(VARIABLES)


def test_new_encryption_key_prints_a_valid_key(capsys, monkeypatch):
    monkeypatch.setenv("PLAN_SERVICE_PERSISTENCE", "nonsense")  # needs no (valid) configuration
    assert main(["new-encryption-key"]) == 0
    key = capsys.readouterr().out.strip()
    assert len(base64.b64decode(key, validate=True)) == 32
    assert Config.from_env({"PLAN_SERVICE_ENCRYPTION_KEY": key}).encryption_key == key
    assert main(["new-encryption-key", "--bytes", "16"]) == 0
    assert len(base64.b64decode(capsys.readouterr().out.strip())) == 16
