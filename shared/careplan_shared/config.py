"""Reading typed settings from the environment, with errors that name the variable."""

from __future__ import annotations

from collections.abc import Mapping


class ConfigError(ValueError):
    pass


def env_int(env: Mapping[str, str], name: str, default: int, low: int = 0, high: int = 2**31) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def env_choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name) or default
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


_TRUE = ("1", "true", "yes", "on", "y", "t")
_FALSE = ("", "0", "false", "no", "off", "n", "f")


def env_flag(env: Mapping[str, str], name: str) -> bool:
    """A yes/no setting; unset or empty is no."""
    value = (env.get(name) or "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {env.get(name)!r}")
