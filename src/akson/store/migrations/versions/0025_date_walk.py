"""A walked date parameter's short rows by 31-day bucket in pk order (PostgreSQL).

Revision ID: 0025
Revises: 0024

akson.store.search_sql.DATE_WALKS, `date_walk`: `ix_sp_date_walk_encounter_date` holds the
date rows of `Encounter.date` no longer than 31 days by bucket (`low / 2678400000000`,
PostgreSQL's integer division), then pk, carrying `low` and `high`; a range of buckets is a few
index ranges each in pk order, merged, so a page of a month of Encounters reads its first
matches only. Longer rows come from `ix_sp_date_long` (migration 0016). Type and parameter are
in the predicate only: as leading keys the planner, knowing them from the predicate, would not
descend by them and would scan the whole index per bucket. The predicate's literals must match
`search_sql.SHORT_SPAN`, `pairs.BUCKET` and DATE_WALKS. SQLite reads the range as before.
"""

from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE INDEX ix_sp_date_walk_encounter_date ON sp_date "
               "((low / 2678400000000), res_pk) INCLUDE (low, high) "
               "WHERE high - low <= 2678400000000 AND res_type = 'Encounter' AND param = 'date'")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_sp_date_walk_encounter_date")
