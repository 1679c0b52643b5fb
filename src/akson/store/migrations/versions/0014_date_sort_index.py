"""`sp_date (res_type, param, high DESC, res_pk)`: pages sorted by a date, newest first, read
in index order (PostgreSQL only; `Session._newest_walk_sql`).

Revision ID: 0014
Revises: 0013

`_sort=-date` (the most common sort: the newest results, encounters, notes) otherwise computes
the sort key of every match and sorts them all: 1.5–2.7 s for a common code at a million
resources. SQLite keeps the generic statement, so the index is not built there.
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index("ix_sp_date_newest", "sp_date",
                        ["res_type", "param", sa.text("high DESC"), "res_pk"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_sp_date_newest", table_name="sp_date")
