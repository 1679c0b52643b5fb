"""Initial schema: resources, versions and search-parameter index tables.

Revision ID: 0001
Revises:
"""

from alembic import op

from akson.store import schema

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TABLES = ("resource", "resource_version", *schema.INDEX_TABLES)


def upgrade() -> None:
    # The first revision creates the tables as `schema` defines them today; later revisions
    # must spell out their changes instead of reading `schema`.
    bind = op.get_bind()
    for name in _TABLES:
        schema.metadata.tables[name].create(bind)


def downgrade() -> None:
    bind = op.get_bind()
    for name in reversed(_TABLES):
        schema.metadata.tables[name].drop(bind)
