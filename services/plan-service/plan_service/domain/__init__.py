"""The individual plan: aggregate, events, invariants. Pure: no Flask, no database, no broker."""
