"""The service's own view of each plan, and the rules that decide which prompts it needs.
Pure: no Flask, no database, no broker."""
