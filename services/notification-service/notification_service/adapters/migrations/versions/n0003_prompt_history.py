"""Prompts get a history (issue 13): JSON entries of coordinator ids and times only, e.g.
``{"kind": "reassigned", "at": ..., "from": "k1", "to": "k2"}`` when a plan's new coordinator
takes over its prompts. Not plan content: stored as it is, not sealed. A store whose older code
already added it is left as it is.

Revision ID: n0003
"""

import sqlalchemy as sa
from alembic import op

revision = "n0003"
down_revision = "n0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    present = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("prompts")}
    if "history" not in present:
        op.execute("ALTER TABLE prompts ADD COLUMN history TEXT NOT NULL DEFAULT '[]'")


def downgrade() -> None:
    raise NotImplementedError("the store is never downgraded")
