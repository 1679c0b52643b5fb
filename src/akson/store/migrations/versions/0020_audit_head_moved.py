"""`akson_audit_head_moved()`: the error a write's audit append raises when its chain moved.

Revision ID: 0020
Revises: 0019

ADR 0017. A write transaction appends its audit records with a compare-and-set on the chain's
head. Its result used to be fetched before COMMIT, a pipeline sync and a round trip in the
middle of a write that is otherwise one flush; now a head that moved fails the statement with
this function's SQLSTATE (40A01, in class 40 "transaction rollback"), the transaction rolls
back, and the caller runs the write again on the locking path. PostgreSQL only: SQLite always
takes the lock.
"""

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION akson_audit_head_moved() RETURNS bigint LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'the audit chain head moved' USING ERRCODE = '40A01'; END $$"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION akson_audit_head_moved()")
