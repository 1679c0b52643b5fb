"""One-time keys shared by every server process: accepted DPoP proof jtis (replay_guard).

Revision ID: 0013
Revises: 0012

On PostgreSQL the table is UNLOGGED: the keys live minutes, and a database crash that empties
the table loses no more than a restarted in-process cache would.
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "replay_guard",
        sa.Column("key", sa.String(64), primary_key=True),  # SHA-256 hex of thumbprint + jti
        sa.Column("expires_at", sa.Float, nullable=False),  # Unix seconds
    )
    op.create_index("ix_replay_guard_expires", "replay_guard", ["expires_at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE replay_guard SET UNLOGGED")


def downgrade() -> None:
    op.drop_table("replay_guard")
