"""Which payload schema belongs to which (event_type, schema_version)."""

from marshmallow import Schema

from careplan_shared.events import v1

PAYLOAD_SCHEMAS: dict[tuple[str, int], type[Schema]] = {
    (name, 1): schema for name, schema in v1.SCHEMAS.items()
}
CURRENT_VERSION = 1

_instances: dict[tuple[str, int], Schema] = {}


def payload_schema(event_type: str, schema_version: int = CURRENT_VERSION) -> Schema:
    """The schema instance for one event type and version; KeyError if unknown."""
    key = (event_type, schema_version)
    try:
        return _instances[key]
    except KeyError:
        schema = PAYLOAD_SCHEMAS[key]()
        _instances[key] = schema
        return schema
