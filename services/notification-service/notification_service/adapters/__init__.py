"""Adapters: the prompt store, the event sources (HTTP feed, Kafka), the channels."""
