"""Reindex jobs: one row per SearchParameter change, the queue and log of (re)indexing it.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# INTEGER PRIMARY KEY is SQLite's rowid (autoincrementing); BIGINT elsewhere.
_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "reindex_job",
        # Increasing: jobs run strictly in this order, and each server process remembers the
        # highest id it has seen, so a new row tells every process a SearchParameter changed.
        sa.Column("id", _BigId, primary_key=True, autoincrement=True),
        sa.Column("action", sa.String(8), nullable=False),  # index | remove
        sa.Column("resource_id", sa.String(64)),  # the SearchParameter's id (NULL: CLI jobs)
        sa.Column("param_url", sa.Text, nullable=False),
        sa.Column("param_code", sa.String(100), nullable=False),
        sa.Column("base", sa.Text, nullable=False),  # base resource types, space-separated
        # queued → running → completed | failed; queued → cancelled (superseded by a later job)
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("done", sa.BigInteger, nullable=False),  # resources indexed so far
        sa.Column("total", sa.BigInteger),  # resources to index (counted when the job starts)
        sa.Column("created", sa.BigInteger, nullable=False),  # µs since epoch, UTC
        sa.Column("started", sa.BigInteger),
        sa.Column("finished", sa.BigInteger),
        # A running job's worker touches `heartbeat` with every batch; a stale one is taken over.
        sa.Column("heartbeat", sa.BigInteger),
        sa.Column("worker", sa.String(36)),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_reindex_job_status", "reindex_job", ["status", "id"])


def downgrade() -> None:
    op.drop_index("ix_reindex_job_status", table_name="reindex_job")
    op.drop_table("reindex_job")
