"""Planner statistics that know which codes belong to which parameter (PostgreSQL).

Revision ID: 0008
Revises: 0007

The index tables hold every parameter of every type in one table, so a value's frequency
depends on (res_type, param): `gender = female` is 3 % of Patient gender rows but 0.2 % of all
token rows. Per-column statistics cannot see that; the planner then takes a large set for a
small one and a 20 ms search takes 500 ms at a million resources (docs/performance.md).
Multivariate MCV lists on the key columns and larger samples for the value columns fix the
estimates (ndistinct and dependencies statistics were tried: they cost seconds per ANALYZE and
changed no plan). SQLite: nothing to do.
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_STATISTICS = {
    "st_sp_token": ("sp_token", "res_type, param, system, code"),
    "st_sp_date": ("sp_date", "res_type, param"),
    "st_sp_reference": ("sp_reference", "res_type, param, target_type"),
    "st_sp_string": ("sp_string", "res_type, param"),
    "st_sp_quantity": ("sp_quantity", "res_type, param, system, code"),
}
_TARGETS = {("sp_token", "code"), ("sp_date", "low"), ("sp_date", "high"),
            ("sp_string", "value_norm"), ("sp_reference", "target_id")}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, (table, columns) in _STATISTICS.items():
        op.execute(f"CREATE STATISTICS IF NOT EXISTS {name} (mcv) "
                   f"ON {columns} FROM {table}")
    for table, column in sorted(_TARGETS):
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET STATISTICS 1000")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in _STATISTICS:
        op.execute(f"DROP STATISTICS IF EXISTS {name}")
    for table, column in sorted(_TARGETS):
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET STATISTICS -1")
