"""Alembic's environment for plan-service: the connection and lock come from migrate()."""

from careplan_shared.migrate import run_env

run_env()
