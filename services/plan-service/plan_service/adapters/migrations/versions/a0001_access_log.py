"""The access log (who read or changed which plan). IF NOT EXISTS: a store made before
migrations existed is taken over as it is.

Revision ID: a0001
"""

from alembic import op

revision = "a0001"
down_revision = None
branch_labels = ("access_log",)
depends_on = None


def upgrade() -> None:
    sqlite = op.get_context().dialect.name == "sqlite"
    id_column = "INTEGER PRIMARY KEY AUTOINCREMENT" if sqlite else "BIGSERIAL PRIMARY KEY"
    op.execute(f"CREATE TABLE IF NOT EXISTS careplan_access_log (id {id_column}, "
               "at TEXT NOT NULL, plan_id TEXT NOT NULL, subject TEXT NOT NULL, role TEXT NOT NULL, "
               "on_behalf_of TEXT, action TEXT NOT NULL, result TEXT NOT NULL, status INTEGER NOT NULL)")
    op.execute("CREATE INDEX IF NOT EXISTS careplan_access_log_plan ON careplan_access_log (plan_id, id)")


def downgrade() -> None:
    raise NotImplementedError("the access log is append-only: never downgraded")
