"""Use cases: process an integration event, run the clock, list and acknowledge prompts."""
