"""The token lookup index ends in res_pk, so an equality match is read in primary-key order.

Revision ID: 0009
Revises: 0008

A search page is ordered by `resource.pk`. With `res_pk` as the last column of
`(res_type, param, code, system)`, the rows of one `system|code` come out of the index already
in that order, and a page led by them (search_sql.driver) reads its first matches and stops,
instead of reading and sorting every match (50,000+ for a common code at a million resources).
The index replaces the old one, so writes keep the same number of indexes.
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_sp_token_lookup")
    op.execute("CREATE INDEX ix_sp_token_lookup ON sp_token (res_type, param, code, system, res_pk)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_sp_token_lookup")
    op.execute("CREATE INDEX ix_sp_token_lookup ON sp_token (res_type, param, code, system)")
