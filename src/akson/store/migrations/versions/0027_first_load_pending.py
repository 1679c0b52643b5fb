"""What a first bulk load put off: lookup indexes, chain-row triggers, statistics (PostgreSQL).

Revision ID: 0027
Revises: 0026

akson.store.first_load, ADR 0023. `akson import` into an empty store drops the lookup indexes
and turns off the triggers that add chain rows, writing each here in the same transaction, and
builds them after the copy. A row left here (an import killed part way) is built by the next
`akson db upgrade`, server start or import. SQLite keeps its indexes during a load.
"""

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE TABLE first_load_pending (name varchar(200) PRIMARY KEY, "
               "table_name varchar(64) NOT NULL, "
               "kind varchar(16) NOT NULL CHECK (kind IN ('index', 'trigger', 'analyze')), "
               "definition text)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TABLE first_load_pending")
