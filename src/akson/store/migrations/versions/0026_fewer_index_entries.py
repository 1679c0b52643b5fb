"""Two indexes that every bulk load paid for and no search needed.

Revision ID: 0026
Revises: 0025

- `ix_sp_reference_url` indexed every reference row, though only absolute references carry a
  `url` (a Synthea import: none of 700,000). It now holds the rows that have one; the one search
  that reads it (`url = x`) implies that, so both databases still use it.
- `ix_sp_composite_lookup` (res_type, param, code) is a prefix of `ix_sp_composite_pair`
  (migration 0021), which answers whatever it answered.

Together they were an eighth of the index entries a bulk import writes (docs/performance.md).
"""

from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_sp_reference_url")
    op.execute("CREATE INDEX ix_sp_reference_url ON sp_reference (url) WHERE url IS NOT NULL")
    op.execute("DROP INDEX IF EXISTS ix_sp_composite_lookup")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_sp_reference_url")
    op.execute("CREATE INDEX ix_sp_reference_url ON sp_reference (url)")
    op.execute("CREATE INDEX IF NOT EXISTS ix_sp_composite_lookup ON sp_composite "
               "(res_type, param, code)")
