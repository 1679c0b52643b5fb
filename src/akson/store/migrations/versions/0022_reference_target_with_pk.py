"""The reference target index ends in res_pk: a target's referrers from the index alone.

Revision ID: 0022
Revises: 0021

A chained search (`Observation?subject:Patient.name=x`) reads, for each matching Patient, the
first referrers in pk order (`Session._chain_page_sql`); with `res_pk` in `(target_id,
target_type, res_type, param)` that read is one index range in that order and visits no
`sp_reference` row. The index replaces the old one, so writes keep the same number of indexes.
"""

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_sp_reference_target")
    op.execute("CREATE INDEX ix_sp_reference_target ON sp_reference (target_id, target_type, "
               "res_type, param, res_pk)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_sp_reference_target")
    op.execute("CREATE INDEX ix_sp_reference_target ON sp_reference (target_id, target_type, "
               "res_type, param)")
