"""Dead letters get a status (open | resolved) and resolved_at; the store's key check marker
(store_meta). A store whose older code already added them is left as it is.

Revision ID: n0002
"""

import sqlalchemy as sa
from alembic import op

revision = "n0002"
down_revision = "n0001"
branch_labels = None
depends_on = None

COLUMNS = [("status", "TEXT NOT NULL DEFAULT 'open'"), ("resolved_at", "TEXT")]


def upgrade() -> None:
    present = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("dead_letters")}
    for name, definition in COLUMNS:
        if name not in present:
            op.execute(f"ALTER TABLE dead_letters ADD COLUMN {name} {definition}")
    op.execute("CREATE INDEX IF NOT EXISTS dead_letters_open ON dead_letters (status, source, part, position)")
    op.execute("CREATE TABLE IF NOT EXISTS store_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")


def downgrade() -> None:
    raise NotImplementedError("the store is never downgraded")
