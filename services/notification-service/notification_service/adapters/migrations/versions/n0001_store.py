"""The store as it first shipped: plan views, prompts, consumer positions, dead letters and the
delivery outbox. IF NOT EXISTS: a store made before migrations existed is taken over as it is.

Revision ID: n0001
"""

from alembic import op

revision = "n0001"
down_revision = None
branch_labels = None
depends_on = None

STATEMENTS = [
    """CREATE TABLE IF NOT EXISTS plan_views (
        plan_id TEXT PRIMARY KEY, version INTEGER NOT NULL, state TEXT NOT NULL,
        next_check_at TEXT)""",
    "CREATE INDEX IF NOT EXISTS plan_views_next_check ON plan_views (next_check_at)",
    """CREATE TABLE IF NOT EXISTS prompts (
        id TEXT PRIMARY KEY, plan_id TEXT NOT NULL, rule TEXT NOT NULL, subject TEXT NOT NULL,
        recipient TEXT, status TEXT NOT NULL, due_at TEXT NOT NULL, escalate_at TEXT,
        escalated_at TEXT, created_at TEXT NOT NULL, acknowledged_at TEXT, resolved_at TEXT,
        details TEXT NOT NULL, UNIQUE (plan_id, rule, subject))""",
    "CREATE INDEX IF NOT EXISTS prompts_inbox ON prompts (recipient, status, due_at)",
    "CREATE INDEX IF NOT EXISTS prompts_escalation ON prompts (status, escalate_at)",
    """CREATE TABLE IF NOT EXISTS consumer_positions (
        source TEXT NOT NULL, part INTEGER NOT NULL, position BIGINT NOT NULL,
        PRIMARY KEY (source, part))""",
    """CREATE TABLE IF NOT EXISTS dead_letters (
        id TEXT PRIMARY KEY, source TEXT NOT NULL, part INTEGER NOT NULL, position BIGINT NOT NULL,
        event_id TEXT, reason TEXT NOT NULL, payload TEXT NOT NULL, created_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS deliveries (
        id TEXT PRIMARY KEY, prompt_id TEXT NOT NULL, channel TEXT NOT NULL, kind TEXT NOT NULL,
        status TEXT NOT NULL, attempts INTEGER NOT NULL, next_attempt_at TEXT NOT NULL,
        last_error TEXT, created_at TEXT NOT NULL, UNIQUE (prompt_id, channel, kind))""",
    "CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_attempt_at)",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("the store is never downgraded")
