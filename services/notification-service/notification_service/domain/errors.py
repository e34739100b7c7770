"""Errors every layer may name."""

from __future__ import annotations


class StoreUnreadable(RuntimeError):
    """What the service stored cannot be read back (e.g. the key is wrong or missing). Never the
    event's fault: processing stops (and is retried) instead of dead-lettering events. A store
    raises it, or an error that subclasses it."""
