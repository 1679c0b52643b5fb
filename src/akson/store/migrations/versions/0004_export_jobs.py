"""Bulk Data export jobs, and a (type, pk) index for keyset-paged streaming by type.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "export_job",
        sa.Column("id", sa.String(36), primary_key=True),
        # queued → running → completed | failed; any of them → cancelled (DELETE on the status URL)
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("request", sa.Text, nullable=False),  # the kick-off URL, echoed in the manifest
        sa.Column("params", sa.Text, nullable=False),  # JSON: level, group, types, since, filters
        sa.Column("progress", sa.String(200)),  # what X-Progress shows
        sa.Column("error", sa.Text),
        sa.Column("created", sa.BigInteger, nullable=False),  # µs since epoch, UTC
        sa.Column("started", sa.BigInteger),
        sa.Column("finished", sa.BigInteger),
        # A running job's worker touches `heartbeat` after every chunk; a job whose heartbeat
        # is stale is reclaimed (its worker died), and `worker` tells the old one it lost it.
        sa.Column("heartbeat", sa.BigInteger),
        sa.Column("worker", sa.String(36)),
        sa.Column("transaction_time", sa.BigInteger),
        sa.Column("manifest", sa.Text),  # the completion manifest JSON
    )
    op.create_index("ix_export_job_status_created", "export_job", ["status", "created"])
    # Export streams one type in pk order: `res_type = ? AND pk > ? ORDER BY pk LIMIT n` is then
    # a range scan on both databases, whatever the type's size.
    op.create_index("ix_resource_type_pk", "resource", ["res_type", "pk"])


def downgrade() -> None:
    op.drop_index("ix_resource_type_pk", table_name="resource")
    op.drop_index("ix_export_job_status_created", table_name="export_job")
    op.drop_table("export_job")
