"""plan-service: the event-sourced individual plan (individuell plan) and its HTTP API."""
