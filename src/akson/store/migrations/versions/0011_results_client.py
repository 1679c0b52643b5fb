"""The delivering client of each results message: a lab sees and handles its own deliveries.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("results_message", sa.Column("client_id", sa.String(200)))


def downgrade() -> None:
    op.drop_column("results_message", "client_id")
