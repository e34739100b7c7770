"""Adapters: how plan-service reaches storage (and, later, brokers)."""
