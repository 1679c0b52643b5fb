"""The results service's inbox: every delivered message, its receipt, state and bytes.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "results_message",
        sa.Column("pk", big_id, primary_key=True, autoincrement=True),
        sa.Column("received", sa.BigInteger, nullable=False),
        sa.Column("format", sa.String(40), nullable=False),
        sa.Column("sender", sa.String(200)),
        sa.Column("message_id", sa.String(200)),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(40)),
        sa.Column("detail", sa.Text),
        sa.Column("patient_id", sa.String(64)),
        sa.Column("receipt", sa.LargeBinary, nullable=False),
        sa.Column("raw", sa.LargeBinary),
        sa.Column("updated", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_results_message_digest", "results_message", ["digest"])
    op.create_index("ix_results_message_state", "results_message", ["state", "received"])
    op.create_index("ix_results_message_patient", "results_message", ["patient_id"])


def downgrade() -> None:
    op.drop_table("results_message")
