"""A fast path in front of ``careplan_shared.events.decode_event``, for replaying a topic.

``decode_event`` (marshmallow's ``Schema.load`` of the envelope and of the payload) costs far
more than everything else this service does with an event. Most of that is marshmallow's
machinery around each field (error stores, hooks, partial loading), not the checks themselves.
This module compiles the same schemas, once, into a plain function per event type that runs
the same checks in the same order and builds the same values with the same functions
(``uuid.UUID``, ``datetime.fromisoformat``, the fields' own validators), and that never
raises: whenever it is not certain of the outcome it answers ``None``, and the caller asks
``decode_event``, whose answer (the event, or the error that dead-letters it) is the truth.

So the fast path may accept only what ``decode_event`` accepts, and must build exactly what it
builds; it may decline anything it likes. A schema or field it does not know (a new field
class, a hook, a ``data_key``...) is not compiled: events of that type always go the slow way.
tests/unit/test_decoding.py checks the two agree, by property, on valid and mangled events.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from marshmallow import RAISE, Schema, fields, validate

from careplan_shared.events import PAYLOAD_SCHEMAS, EnvelopeSchema, IntegrationEvent, payload_schema

_DECLINE = object()  # "not certain": the caller uses decode_event
_MISSING = object()
Loader = Callable[[Any], Any]  # value -> loaded value, or _DECLINE
SchemaLoader = Callable[[dict[str, Any]], "dict[str, Any] | None"]


class _Unsupported(Exception):
    """A schema or field this module does not compile (its events take the slow path)."""


def _aware_datetime(value: Any) -> Any:
    # fields.AwareDateTime (format "iso"): datetime.fromisoformat, then aware or an error
    if type(value) is not str:
        return _DECLINE
    try:
        moment = dt.datetime.fromisoformat(value)
        aware = moment.tzinfo is not None and moment.tzinfo.utcoffset(moment) is not None
    except Exception:  # noqa: BLE001 - whatever it is, decode_event says what it means
        return _DECLINE
    return moment if aware else _DECLINE


def _date(value: Any) -> Any:
    # fields.Date (format "iso"): date.fromisoformat
    if type(value) is not str:
        return _DECLINE
    try:
        return dt.date.fromisoformat(value)
    except Exception:  # noqa: BLE001 - see above
        return _DECLINE


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_new, _set = object.__new__, object.__setattr__
_SAFE_UNKNOWN = uuid.SafeUUID.unknown


def _canonical_uuid(value: str) -> uuid.UUID:
    """What uuid.UUID(value) makes of a canonical (lowercase, hyphenated) string, without its
    parsing of every other spelling: the same two attributes it sets, the same values."""
    made = _new(uuid.UUID)
    _set(made, "int", int(value.replace("-", ""), 16))
    _set(made, "is_safe", _SAFE_UNKNOWN)
    return made


def _uuid(value: Any) -> Any:
    # fields.UUID: uuid.UUID(value) for a string
    if type(value) is not str:
        return _DECLINE
    if _FAST_UUID and len(value) == 36 and _CANONICAL_UUID.fullmatch(value):
        return _canonical_uuid(value)
    try:
        return uuid.UUID(value)
    except Exception:  # noqa: BLE001 - see above
        return _DECLINE


def _string(value: Any) -> Any:
    # fields.String: a str is returned as it is (bytes cannot come out of JSON: declined)
    return value if type(value) is str else _DECLINE


def _strict_integer(value: Any) -> Any:
    # fields.Integer(strict=True): an int, not a bool (type() is int excludes bool)
    return value if type(value) is int else _DECLINE


def _dict(value: Any) -> Any:
    # fields.Dict() without keys or values fields: a shallow copy of a mapping
    return dict(value) if type(value) is dict else _DECLINE


def _converter(field: fields.Field) -> Loader | None:
    """How one field's value (not None, not missing) becomes what marshmallow makes of it;
    None for the two that need no conversion, only a type check (String, strict Integer)."""
    if field.pre_load or field.post_load or field.data_key is not None or field.attribute is not None:
        raise _Unsupported(f"field options of {field.name}")
    kind = type(field)
    if kind is fields.String:
        return None
    if kind is fields.Integer:
        if not field.strict:  # type: ignore[attr-defined]
            raise _Unsupported("a non-strict Integer")
        return None
    if kind is fields.UUID:
        return _uuid
    if kind is fields.AwareDateTime:
        if field.format not in ("iso", "iso8601") or field.default_timezone is not None:  # type: ignore[attr-defined]
            raise _Unsupported("an AwareDateTime with a format or a default timezone")
        return _aware_datetime
    if kind is fields.Date:
        if field.format not in ("iso", "iso8601"):  # type: ignore[attr-defined]
            raise _Unsupported("a Date with a format")
        return _date
    if kind is fields.Boolean:
        return _boolean(field)  # type: ignore[arg-type]
    if kind is fields.Dict:
        if field.key_field is not None or field.value_field is not None:  # type: ignore[attr-defined]
            raise _Unsupported("a Dict with keys or values fields")
        return _dict
    if kind is fields.List:
        return _list(field.inner)  # type: ignore[attr-defined]
    raise _Unsupported(f"field class {kind.__name__}")


def _boolean(field: fields.Boolean) -> Loader:
    truthy, falsy = field.truthy, field.falsy
    if not truthy:
        raise _Unsupported("a Boolean without truthy values")

    def load(value: Any) -> Any:
        # the field's own sets, in its order; JSON gives hashable scalars here (else: declined)
        if type(value) not in (bool, int, str):
            return _DECLINE
        if value in truthy:
            return True
        if value in falsy:
            return False
        return _DECLINE

    return load


def _list(inner: fields.Field) -> Loader:
    if inner.allow_none or inner.validators or type(inner) is not fields.String \
            or inner.pre_load or inner.post_load:
        raise _Unsupported("a List of anything but plain strings")

    def load(value: Any) -> Any:
        if type(value) is not list or any(type(item) is not str for item in value):
            return _DECLINE
        return list(value)

    return load


def compile_schema(schema: Schema) -> SchemaLoader:
    """A function of the raw dict that returns what ``schema.load`` returns, or None when it
    is not certain (never raising). Raises _Unsupported for what it does not compile.

    The function is generated as straight-line Python, one block per field in the schema's
    order (what marshmallow does per field, without its machinery): missing -> an error if
    required, else left out; None -> an error unless allowed; else the type check or
    conversion, then each validator's condition (Length, OneOf, Range, as they test)."""
    if schema.many or schema.partial or schema.unknown != RAISE or any(schema._hooks.values()):
        raise _Unsupported(f"schema options of {type(schema).__name__}")
    names: set[str] = set()
    env: dict[str, Any] = {"DECLINE": _DECLINE, "MISSING": _MISSING}
    lines = ["def load(data):", "  try:",
             "    if type(data) is not dict or not NAMES.issuperset(data):",  # unknown keys: an error there
             "      return None",
             "    result = {}"]
    for i, (name, field) in enumerate(schema.load_fields.items()):
        if "." in name:
            raise _Unsupported("a dotted field name")
        if field.load_default is not fields.missing_:
            raise _Unsupported(f"a load_default on {name}")
        names.add(name)
        env[f"K{i}"] = name
        lines += [f"    v = data.get(K{i}, MISSING)",
                  "    if v is MISSING:", "      " + ("return None" if field.required else "pass"),
                  "    elif v is None:", "      " + (f"result[K{i}] = None" if field.allow_none else "return None"),
                  "    else:"]
        convert = _converter(field)
        if convert is not None:
            env[f"C{i}"] = convert
            lines += [f"      v = C{i}(v)", "      if v is DECLINE:", "        return None"]
        else:
            lines += [f"      if type(v) is not {'str' if type(field) is fields.String else 'int'}:",
                      "        return None"]
        lines += _checks(field, i, env)
        lines += [f"      result[K{i}] = v"]
    lines += ["    return result",
              "  except Exception:",  # a comparison that cannot be made, say: decode_event decides
              "    return None"]
    env["NAMES"] = frozenset(names)
    exec("\n".join(lines), env)  # noqa: S102 - our own code, built from the schemas' declarations
    return env["load"]  # type: ignore[no-any-return]


def _checks(field: fields.Field, i: int, env: dict[str, Any]) -> list[str]:
    """The validators' conditions, in their order; a failing one declines."""
    lines: list[str] = []
    for j, check in enumerate(field.validators):
        name = f"V{i}_{j}"
        if type(check) is validate.Length:
            env[name] = check
            lines.append("      n = len(v)")
            if check.equal is not None:
                lines += [f"      if n != {name}.equal:", "        return None"]
                continue
            if check.min is not None:
                lines += [f"      if n < {name}.min:", "        return None"]
            if check.max is not None:
                lines += [f"      if n > {name}.max:", "        return None"]
        elif type(check) is validate.Range:
            env[name] = check
            if check.min is not None:
                lines += [f"      if v {'<' if check.min_inclusive else '<='} {name}.min:", "        return None"]
            if check.max is not None:
                lines += [f"      if v {'>' if check.max_inclusive else '>='} {name}.max:", "        return None"]
        elif type(check) is validate.OneOf:
            choices = check.choices
            if type(field) is fields.String and all(type(c) is str for c in choices):
                choices = frozenset(choices)  # a str is in the set exactly when it is in the list
            env[name] = choices
            lines += [f"      if v not in {name}:", "        return None"]
        else:
            raise _Unsupported(f"a validator of {field.name}")
    return lines


def _compile_all() -> tuple[SchemaLoader, dict[tuple[str, int], SchemaLoader]]:
    envelope = compile_schema(EnvelopeSchema())
    payloads: dict[tuple[str, int], SchemaLoader] = {}
    for key in PAYLOAD_SCHEMAS:
        try:
            payloads[key] = compile_schema(payload_schema(*key))
        except _Unsupported:
            continue  # that type always takes decode_event's way
    return envelope, payloads


_ENVELOPE, _PAYLOADS = _compile_all()


def _checks_hold() -> tuple[bool, bool]:
    """The two shortcuts below copy what a constructor does; used only where this Python and
    this IntegrationEvent are what they were written for (else: the constructors)."""
    sample = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
    made, real = _canonical_uuid(sample), uuid.UUID(sample)
    fast_uuid = (made == real and made.is_safe is real.is_safe and hash(made) == hash(real)
                 and set(getattr(uuid.UUID, "__slots__", ())) <= {"int", "is_safe", "__weakref__"})
    params = getattr(IntegrationEvent, "__dataclass_params__", None)
    names = [f.name for f in dataclasses.fields(IntegrationEvent)]
    fast_event = (params is not None and params.frozen and not hasattr(IntegrationEvent, "__post_init__")
                  and "__slots__" not in vars(IntegrationEvent)
                  and names == [n for n in EnvelopeSchema().load_fields])
    return fast_uuid, fast_event


_FAST_UUID, _FAST_EVENT = _checks_hold()


def _event(envelope: dict[str, Any]) -> IntegrationEvent:
    """IntegrationEvent(**envelope): a frozen dataclass's __init__ sets each field through
    object.__setattr__, which costs more than the rest of the fast path; with every field
    given (the envelope has them all, in order) and no __post_init__, filling its __dict__
    makes the same object."""
    if not _FAST_EVENT:
        return IntegrationEvent(**envelope)
    made = _new(IntegrationEvent)
    made.__dict__.update(envelope)
    return made  # type: ignore[no-any-return]


def fast_decode(data: Any) -> IntegrationEvent | None:
    """The event ``decode_event(data)`` returns, or None: then call ``decode_event``."""
    envelope = _ENVELOPE(data)
    if envelope is None:
        return None
    payload_loader = _PAYLOADS.get((envelope["event_type"], envelope["schema_version"]))
    if payload_loader is None:
        return None
    payload = payload_loader(envelope["payload"])
    if payload is None:
        return None
    envelope["payload"] = payload
    return _event(envelope)


def parse_json(raw: bytes | str) -> Any:
    """orjson's answer where it has one; None where it refuses (then json.loads decides: it
    takes NaN, integers beyond 64 bits, lone surrogates...). Wherever orjson accepts a text,
    json.loads accepts it too and builds the same values, except integers beyond 64 bits,
    which orjson makes floats: no field takes a float, so such an event is declined later."""
    try:
        return orjson.loads(raw)
    except Exception:  # noqa: BLE001 - orjson.JSONDecodeError, or a str it cannot take: json.loads decides
        return None
