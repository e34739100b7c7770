"""Shared by both care-plan services: the integration-event contract and small web helpers.

Nothing here touches a database or a broker; importing it does no work.
"""
