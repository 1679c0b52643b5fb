"""A current version's JSON is stored once, in `resource`; its version row holds none.

Revision ID: 0012
Revises: 0011

Every version used to be written twice: into `resource` and into `resource_version`. That is
about a fifth of the database for data that is rarely changed, such as lab results (ADR 0009).
A version row now gets its content when a later version supersedes it. Downgrade copies it
back.
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "UPDATE resource_version SET content = NULL WHERE content IS NOT NULL AND EXISTS "
        "(SELECT 1 FROM resource r WHERE r.pk = resource_version.res_pk "
        "AND r.version = resource_version.version)")


def downgrade() -> None:
    op.execute(
        "UPDATE resource_version SET content = (SELECT r.content FROM resource r "
        "WHERE r.pk = resource_version.res_pk) "
        "WHERE content IS NULL AND NOT deleted")
