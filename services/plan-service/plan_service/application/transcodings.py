"""How the plan's value objects are stored inside events and snapshots (JSON)."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

from eventsourcing.persistence import JSONTranscoder, Transcoding

from plan_service.domain import values


class DateAsISO(Transcoding):
    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


def _dataclass_transcoding(cls: type) -> Transcoding:
    names = tuple(f.name for f in dataclasses.fields(cls))

    class _AsDict(Transcoding):
        type = cls
        name = f"careplan.{cls.__name__}"

        def encode(self, obj: Any) -> dict[str, Any]:
            return {n: getattr(obj, n) for n in names}

        def decode(self, data: dict[str, Any]) -> Any:
            return cls(**data)

    return _AsDict()


VALUE_CLASSES = (
    values.Goal,
    values.InformationRecord,
    values.Participant,
    values.Consent,
    values.Evaluation,
    values.TriangleMeeting,
    values.WhatMatters,
)


def register(transcoder: JSONTranscoder) -> None:
    transcoder.register(DateAsISO())
    for cls in VALUE_CLASSES:
        transcoder.register(_dataclass_transcoding(cls))
