"""Each audit record holds its patient ids (`audit_event.patients`); PostgreSQL indexes them
with GIN and drops `audit_patient`.

Revision ID: 0019
Revises: 0018

ADR 0015. The ids were hashed into every record already; now they are stored beside it, so a
record reads and verifies from its own row. On PostgreSQL a GIN index on the column finds a
citizen's events: an insert appends to the index's pending list, where `audit_patient` cost a
heap row and two B-tree entries, one at a random place, per patient per access. SQLite keeps
`audit_patient` as its index (it has no GIN), written beside the column.

The append-only trigger refuses UPDATE, so the copy of the ids into existing rows runs with
it switched off inside this migration's transaction.
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

_PG_IDS = ("SELECT coalesce(array_agg(p.patient_id ORDER BY p.patient_id COLLATE \"C\"), '{}') "
           "FROM audit_patient p WHERE p.chain = audit_event.chain AND p.seq = audit_event.seq")
_SQLITE_IDS = ("SELECT json_group_array(patient_id) FROM (SELECT patient_id FROM audit_patient p "
               "WHERE p.chain = audit_event.chain AND p.seq = audit_event.seq "
               "ORDER BY patient_id)")
_SQLITE_REFUSE = ("CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event "
                  "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE audit_event ADD COLUMN patients varchar(64)[] NOT NULL "
                   "DEFAULT '{}'")
        op.execute("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only")
        op.execute(f"UPDATE audit_event SET patients = ({_PG_IDS}) WHERE EXISTS "
                   "(SELECT FROM audit_patient p WHERE p.chain = audit_event.chain "
                   "AND p.seq = audit_event.seq)")
        op.execute("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only")
        # A pending list of 512 kB, not 4 MB: the insert that finds it full merges it, which
        # took up to 200 ms at 4 MB and 32 ms at 512 kB, for 0.5 µs more per record (ADR 0015).
        op.execute("CREATE INDEX ix_audit_event_patients ON audit_event USING gin (patients) "
                   "WITH (gin_pending_list_limit = 512)")
        op.drop_table("audit_patient")
        return
    op.add_column("audit_event", sa.Column("patients", sa.Text, nullable=False,
                                           server_default="[]"))
    op.execute("DROP TRIGGER audit_event_no_update")
    op.execute(f"UPDATE audit_event SET patients = ({_SQLITE_IDS}) WHERE EXISTS "
               "(SELECT 1 FROM audit_patient p WHERE p.chain = audit_event.chain "
               "AND p.seq = audit_event.seq)")
    op.execute(_SQLITE_REFUSE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_table(
            "audit_patient",
            sa.Column("chain", sa.Integer, primary_key=True),
            sa.Column("seq", sa.BigInteger, primary_key=True),
            sa.Column("patient_id", sa.String(64), primary_key=True),
            sa.Column("recorded", sa.BigInteger, nullable=False),
        )
        op.create_index("ix_audit_patient_log", "audit_patient",
                        ["patient_id", "recorded", "chain", "seq"])
        op.execute("INSERT INTO audit_patient SELECT e.chain, e.seq, p, e.recorded "
                   "FROM audit_event e, unnest(e.patients) AS p")
        for trigger, when in (("append_only", "BEFORE UPDATE OR DELETE"),
                              ("no_truncate", "BEFORE TRUNCATE")):
            each = "STATEMENT" if trigger == "no_truncate" else "ROW"
            op.execute(f"CREATE TRIGGER audit_patient_{trigger} {when} ON audit_patient "
                       f"FOR EACH {each} EXECUTE FUNCTION akson_audit_append_only()")
        op.drop_index("ix_audit_event_patients", table_name="audit_event")
        op.drop_column("audit_event", "patients")
        return
    op.execute("ALTER TABLE audit_event DROP COLUMN patients")  # SQLite ≥ 3.35 keeps the triggers
