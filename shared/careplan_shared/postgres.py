"""libpq settings every PostgreSQL connection of both services takes (issue 13, "faults cost
seconds"): a connection attempt to a host that does not answer gives up after 2 s (libpq's
minimum), and a peer that died on an open connection is noticed by TCP keepalives within
seconds, not the kernel's two hours."""

from __future__ import annotations

from typing import Any

CONNECT_KWARGS: dict[str, Any] = {
    "connect_timeout": 2, "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 2,
}
