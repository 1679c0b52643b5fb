"""The relational schema: current resources, every version, and one index table per param type.

Every table that holds patient data carries `res_pk`, and `resource` carries `patient_id`, so the
same schema can later be distributed by patient (ARCHITECTURE.md, Storage).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()

#: Text compared byte-wise, so prefix ranges use the index on PostgreSQL as on SQLite.
BinaryText = sa.String().with_variant(sa.String(collation="C"), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # INTEGER PRIMARY KEY = rowid

resource = sa.Table(
    "resource",
    metadata,
    sa.Column("pk", BigId, primary_key=True, autoincrement=True),
    sa.Column("res_type", sa.String(64), nullable=False),
    sa.Column("res_id", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("last_updated", sa.BigInteger, nullable=False),  # µs since epoch, UTC
    sa.Column("deleted", sa.Boolean, nullable=False),
    sa.Column("patient_id", sa.String(64)),
    sa.Column("org", sa.String(32)),  # writing municipality (orgnr): data controller, pjl § 9
    sa.Column("unit", sa.String(64)),
    sa.Column("content", sa.LargeBinary),  # the stored JSON, exactly as served
    sa.UniqueConstraint("res_type", "res_id", name="uq_resource_type_id"),
    sa.Index("ix_resource_type_updated", "res_type", "last_updated"),
    sa.Index("ix_resource_patient", "patient_id"),
)

resource_version = sa.Table(
    "resource_version",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("res_pk", sa.BigInteger, nullable=False),
    sa.Column("res_type", sa.String(64), nullable=False),
    sa.Column("res_id", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("last_updated", sa.BigInteger, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False),
    sa.Column("method", sa.String(8), nullable=False),
    sa.Column("content", sa.LargeBinary),
    sa.UniqueConstraint("res_type", "res_id", "version", name="uq_version"),
    sa.Index("ix_version_updated", "last_updated"),
    sa.Index("ix_version_type_updated", "res_type", "last_updated"),
)


def supersede_sql(res_type: str = "%s", res_id: str = "%s", version: str = "%s") -> str:
    """Before `resource` takes a new version, the current version's row gets its content.

    A current version's content is stored once, in `resource`; its `resource_version` row holds
    none until a later version supersedes it (ADR 0009). The arguments are the placeholders of
    the type, id and the version being superseded."""
    return (
        "UPDATE resource_version SET content = (SELECT r.content FROM resource r "
        "WHERE r.pk = resource_version.res_pk AND r.version = resource_version.version) "
        f"WHERE res_type = {res_type} AND res_id = {res_id} AND version = {version} "
        "AND content IS NULL AND NOT deleted"
    )


def _index_table(name: str, *columns: sa.Column, lookup: tuple[str, ...]) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("res_pk", sa.BigInteger, nullable=False),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("param", sa.String(100), nullable=False),
        *columns,
        sa.Index(f"ix_{name}_lookup", "res_type", "param", *lookup),
        sa.Index(f"ix_{name}_res", "res_pk"),
    )


sp_token = _index_table(
    "sp_token",
    sa.Column("system", BinaryText),
    sa.Column("code", BinaryText),
    # res_pk last: an equality match comes out in pk order, so a page can stop early (0009).
    lookup=("code", "system", "res_pk"),
)
sp_string = _index_table(
    "sp_string",
    sa.Column("value_norm", BinaryText, nullable=False),
    sa.Column("value_exact", sa.String, nullable=False),
    lookup=("value_norm", "res_pk"),  # res_pk last: a prefix's rows from the index alone (0017)
)
sp_date = _index_table(
    "sp_date",
    sa.Column("low", sa.BigInteger, nullable=False),
    sa.Column("high", sa.BigInteger, nullable=False),
    lookup=("low", "high", "res_pk"),  # res_pk last: a range from the index alone (0015)
)
sp_reference = sa.Table(
    "sp_reference",
    metadata,
    sa.Column("res_pk", sa.BigInteger, nullable=False),
    sa.Column("res_type", sa.String(64), nullable=False),
    sa.Column("param", sa.String(100), nullable=False),
    sa.Column("target_type", sa.String(64)),
    sa.Column("target_id", sa.String(64)),
    sa.Column("url", BinaryText),
    # res_pk last: a target's referrers in pk order from the index alone (0022).
    sa.Index("ix_sp_reference_target", "target_id", "target_type", "res_type", "param", "res_pk"),
    # Only absolute references have a url (0026).
    sa.Index("ix_sp_reference_url", "url", postgresql_where=sa.text("url IS NOT NULL"),
             sqlite_where=sa.text("url IS NOT NULL")),
    sa.Index("ix_sp_reference_res", "res_pk"),
)
sp_quantity = _index_table(
    "sp_quantity",
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("system", BinaryText),
    sa.Column("code", BinaryText),
    lookup=("value",),
)
sp_number = _index_table("sp_number", sa.Column("value", sa.Float, nullable=False), lookup=("value",))
sp_uri = _index_table("sp_uri", sa.Column("uri", BinaryText, nullable=False), lookup=("uri",))

INDEX_TABLES = ("sp_token", "sp_string", "sp_date", "sp_reference", "sp_quantity", "sp_number", "sp_uri")

# ------------------------------------------------------------------ audit log (migration 0006)
# Append-only, hash-chained AuditEvents (akson.store.audit_log). Only INSERT is ever issued on
# audit_event and audit_patient; PostgreSQL refuses UPDATE and DELETE on them with a trigger.

audit_event = sa.Table(
    "audit_event",
    metadata,
    sa.Column("chain", sa.Integer, primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),  # 1, 2, … within the chain, no gaps
    sa.Column("recorded", sa.BigInteger, nullable=False),  # µs since epoch, UTC
    sa.Column("action", sa.String(1), nullable=False),  # C R U D E
    sa.Column("subtype", sa.String(64), nullable=False),  # read, search-type, login, $export, …
    sa.Column("outcome", sa.String(2), nullable=False),  # 0 4 8 12
    sa.Column("purpose", sa.String(16)),  # TREAT ETREAT COC BTG (urn:oid:2.16.840.1.113883.1.11.20448)
    sa.Column("user_selected", sa.Boolean, nullable=False),  # self-declared care relationship
    sa.Column("org", sa.String(32)),  # legal entity orgnr of the actor (municipality)
    sa.Column("unit", sa.String(64)),  # point of care (underenhet) orgnr
    sa.Column("agent", sa.String(200)),  # non-personal actor key: hpr:…, sub:…, client:…
    sa.Column("content", sa.LargeBinary, nullable=False),  # the event's facts (ADR 0013) as JSON
    sa.Column("prev_hash", sa.LargeBinary, nullable=False),
    sa.Column("hash", sa.LargeBinary, nullable=False),
    # > 1: a block of that many routine reads' records (ADR 0014, akson.store.audit_log.block)
    sa.Column("items", sa.Integer, nullable=False, server_default="1"),
    # The Patient logical ids the record concerns, sorted (migration 0019, ADR 0015): an array
    # with a GIN index (the citizen's access log) on PostgreSQL, a JSON array on SQLite.
    sa.Column("patients", postgresql.ARRAY(sa.String(64)).with_variant(sa.Text, "sqlite"),
              nullable=False),
    sa.Index("ix_audit_event_org_recorded", "org", "recorded"),
    sa.Index("ix_audit_event_recorded", "recorded"),
    sa.Index("ix_audit_event_patients", "patients", postgresql_using="gin",
             postgresql_with={"gin_pending_list_limit": 512}),
)

# SQLite only (PostgreSQL dropped it in migration 0019): SQLite's index of audit_event.patients,
# one row per patient per record, which it has no GIN for.

audit_patient = sa.Table(
    "audit_patient",
    metadata,
    sa.Column("chain", sa.Integer, primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("patient_id", sa.String(64), primary_key=True),  # Patient logical id
    sa.Column("recorded", sa.BigInteger, nullable=False),  # copy of the event's, for the keyset
    sa.Index("ix_audit_patient_log", "patient_id", "recorded", "chain", "seq"),
)

audit_chain = sa.Table(
    "audit_chain",
    metadata,
    sa.Column("chain", sa.Integer, primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),  # the head: last appended sequence
    sa.Column("hash", sa.LargeBinary, nullable=False),  # the head's hash
    sa.Column("mac", sa.LargeBinary, nullable=False),  # checkpoint MAC under the installation key
    sa.Column("updated", sa.BigInteger, nullable=False),
)

# ------------------------------------------------------------------ results inbox (migration 0010)
# Every message delivered to the results service (akson.results.ingest): its receipt, its state
# (stored, rejected = quarantine, unmatched = manual matching queue, reserved) and its bytes, so
# nothing delivered is ever silently lost. A citizen's reservation purges their messages' bytes.

results_message = sa.Table(
    "results_message",
    metadata,
    sa.Column("pk", BigId, primary_key=True, autoincrement=True),
    sa.Column("received", sa.BigInteger, nullable=False),  # µs since epoch, UTC
    sa.Column("format", sa.String(40), nullable=False),
    sa.Column("sender", sa.String(200)),  # the sending organisation, as the message names it
    sa.Column("client_id", sa.String(200)),  # the delivering client: its deliveries, its queue
    sa.Column("message_id", sa.String(200)),  # the sender's own id of the message
    sa.Column("digest", sa.String(64), nullable=False),  # sha256 of the bytes: re-deliveries
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(40)),  # reason code (akson.results.model.REASONS)
    sa.Column("detail", sa.Text),  # what was wrong, for operators; never personal data
    sa.Column("patient_id", sa.String(64)),  # the matched Patient, when one was
    sa.Column("receipt", sa.LargeBinary, nullable=False),  # the receipt JSON as answered
    sa.Column("raw", sa.LargeBinary),  # the bytes, kept only while the delivery waits
    sa.Column("updated", sa.BigInteger, nullable=False),
    sa.Index("ix_results_message_digest", "digest"),
    sa.Index("ix_results_message_state", "state", "received"),
    sa.Index("ix_results_message_patient", "patient_id"),
)

# One-time keys shared by every server process (akson.store.replay_guard): accepted DPoP proof
# jtis, kept until the proof could no longer pass its time check. UNLOGGED on PostgreSQL.

replay_guard = sa.Table(
    "replay_guard",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),  # SHA-256 hex of thumbprint + jti
    sa.Column("expires_at", sa.Float, nullable=False),  # Unix seconds
    sa.Index("ix_replay_guard_expires", "expires_at"),
)
