"""What a transport hands the consumer: one integration event at its place in the source.
Here (not in the application) so that the sources (adapters) and the consumer (application)
share it without an import running back up a layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Record:
    part: int  # Kafka partition; 0 for the HTTP feed
    position: int  # Kafka offset, or the feed's log position
    raw: Any  # bytes (Kafka) or the decoded JSON object (feed)
