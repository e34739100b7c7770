"""The event store: the eventsourcing library's own tables (made by the library's recorders, as
eventsourcing 9.5.6 makes them) and the relay's position. IF NOT EXISTS: a store made before
migrations existed is taken over as it is.

Revision ID: e0001
"""

from alembic import op

revision = "e0001"
down_revision = None
branch_labels = ("events",)
depends_on = None

APPLICATION_NAME = "PlanService"  # PlanApplication.name: the library names its PostgreSQL tables after it


def upgrade() -> None:
    from eventsourcing.persistence import InfrastructureFactory
    from eventsourcing.utils import Environment

    # The library opens its own connection: SQLite in autocommit DDL, PostgreSQL in its own
    # transactions. It runs under migrate()'s lock like the rest of this revision.
    config = op.get_context().config
    assert config is not None  # migrate.upgrade() runs the revisions with its Config
    env = dict(config.attributes["library_env"], CREATE_TABLE="y",
               POSTGRES_POOL_SIZE="1", POSTGRES_MAX_OVERFLOW="0")
    factory = InfrastructureFactory.construct(Environment(APPLICATION_NAME, env))
    try:
        factory.application_recorder()  # stored events and the notification log
        factory.aggregate_recorder("snapshots")
    finally:
        factory.close()
    op.execute("CREATE TABLE IF NOT EXISTS careplan_relay_position "
               "(relay TEXT PRIMARY KEY, position BIGINT NOT NULL)")


def downgrade() -> None:
    raise NotImplementedError("the event store is never downgraded")
