"""An audit record may hold a block of routine reads' records: `audit_event.items`.

Revision ID: 0018
Revises: 0017

A worker's routine read records of one audit write that share their columns (action, subtype,
outcome, purpose, org, unit, agent) are stored as one row that holds them all (ADR 0014);
`items` says how many (1 for every other record, and for every record written before).
Adding a column with a constant default rewrites no row, and the append-only triggers refuse
UPDATE, not ALTER.
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("audit_event", sa.Column("items", sa.Integer, nullable=False,
                                           server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("audit_event") as batch:
        batch.drop_column("items")
