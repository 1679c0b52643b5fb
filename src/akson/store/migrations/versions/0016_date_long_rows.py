"""Date index rows longer than 31 days get their own partial index.

Revision ID: 0016
Revises: 0015

An overlap search (`date=ge2026-01-01&date=lt2026-02-01` on Encounter) could bound the scan
of `ix_sp_date_lookup (…, low, high, res_pk)` only at its end (`low < Y`), so a recent month
read every date row back to the oldest. Rows of at most 31 days that reach past X start after
X − 31 days; the few longer ones are read from this index instead (`search_sql.same_row_sql`).
Its predicate must stay the literal `search_sql.SHORT_SPAN` uses, or the planner cannot use it.
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX IF NOT EXISTS ix_sp_date_long ON sp_date "
               "(res_type, param, high, low, res_pk) WHERE high - low > 2678400000000")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_sp_date_long")
