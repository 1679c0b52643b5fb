"""Event-feed positions and rejected events (person-register sync, docs/registers.md).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# INTEGER PRIMARY KEY is SQLite's rowid (autoincrementing); BIGINT elsewhere.
_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "sync_state",
        sa.Column("feed", sa.String(64), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),  # last handled sequence
        sa.Column("updated", sa.BigInteger, nullable=False),  # µs since epoch, UTC
    )
    op.create_table(
        "sync_reject",
        sa.Column("id", _BigId, primary_key=True, autoincrement=True),
        sa.Column("feed", sa.String(64), nullable=False),
        sa.Column("sequence", sa.BigInteger),  # NULL: the item could not be placed in the order
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),  # µs since epoch, UTC
    )
    op.create_index("ix_sync_reject_feed_sequence", "sync_reject", ["feed", "sequence"])


def downgrade() -> None:
    op.drop_index("ix_sync_reject_feed_sequence", table_name="sync_reject")
    op.drop_table("sync_reject")
    op.drop_table("sync_state")
