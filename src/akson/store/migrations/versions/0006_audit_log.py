"""The append-only, hash-chained audit log: events, their patients, and one head per chain.

On PostgreSQL a trigger refuses UPDATE, DELETE and TRUNCATE on `audit_event` and
`audit_patient`: the application can only append. A superuser can still drop the trigger and
tamper; `akson audit verify` is what detects that (akson.store.audit_log).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_REFUSE = """
CREATE OR REPLACE FUNCTION akson_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table(
        "audit_event",
        sa.Column("chain", sa.Integer, primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),  # 1, 2, … within the chain, no gaps
        sa.Column("recorded", sa.BigInteger, nullable=False),  # µs since epoch, UTC
        sa.Column("action", sa.String(1), nullable=False),
        sa.Column("subtype", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(2), nullable=False),
        sa.Column("purpose", sa.String(16)),
        sa.Column("user_selected", sa.Boolean, nullable=False),
        sa.Column("org", sa.String(32)),
        sa.Column("unit", sa.String(64)),
        sa.Column("agent", sa.String(200)),
        sa.Column("content", sa.LargeBinary, nullable=False),
        sa.Column("prev_hash", sa.LargeBinary, nullable=False),
        sa.Column("hash", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_audit_event_org_recorded", "audit_event", ["org", "recorded"])
    op.create_index("ix_audit_event_recorded", "audit_event", ["recorded"])
    op.create_table(
        "audit_patient",
        # Primary key in (chain, seq) order: verify reads a chain's patients by sequence range.
        sa.Column("chain", sa.Integer, primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("patient_id", sa.String(64), primary_key=True),
        sa.Column("recorded", sa.BigInteger, nullable=False),
    )
    # The citizen's access log: one patient's events, newest first, keyset-paged.
    op.create_index("ix_audit_patient_log", "audit_patient",
                    ["patient_id", "recorded", "chain", "seq"])
    op.create_table(
        "audit_chain",
        sa.Column("chain", sa.Integer, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.LargeBinary, nullable=False),
        sa.Column("mac", sa.LargeBinary, nullable=False),
        sa.Column("updated", sa.BigInteger, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_REFUSE)
        for table in ("audit_event", "audit_patient"):
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION akson_audit_append_only()")
            op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION akson_audit_append_only()")
    else:  # SQLite: the same refusal, so a slip in application code fails on both databases
        for table in ("audit_event", "audit_patient"):
            for verb in ("UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                           "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END")


def downgrade() -> None:
    op.drop_table("audit_chain")
    op.drop_index("ix_audit_patient_log", table_name="audit_patient")
    op.drop_table("audit_patient")
    op.drop_index("ix_audit_event_recorded", table_name="audit_event")
    op.drop_index("ix_audit_event_org_recorded", table_name="audit_event")
    op.drop_table("audit_event")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS akson_audit_append_only()")
