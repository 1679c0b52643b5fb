"""Chain rows: each referrer with its target's values, kept by triggers (PostgreSQL).

Revision ID: 0024
Revises: 0023

ADR 0020, akson.store.chain_rows. `sp_chain` holds (chain, value_norm, res_pk, target_pk) for
every declared chain: a referrer's `sp_reference` row of the chain's parameter to a live
target, and each of that target's `sp_string` rows of the chain's target parameter. Four row
triggers keep it so, each with a WHEN that passes only a chain's rows:

- a `sp_reference` row added: its referrer's rows, for a target that exists;
- a `sp_string` row added: its target's rows, for referrers that exist (a target written
  after its referrers, as a bulk load or a transaction may);
- a `sp_reference` row removed: the referrer's rows of a target it no longer refers to;
- a `sp_string` row removed: the target's rows of a value it no longer has.

A write replaces a resource's index rows by a DELETE and an INSERT in one statement, and
PostgreSQL fires their triggers in an order this migration does not choose; so a removal keeps
rows the statement's other half put back, and an addition skips rows already there. Each
trigger first takes an advisory lock on its target (see _LOCK_NS). Emptying either table
wholesale empties `sp_chain`. SQLite has no `sp_chain` (its searches take the general chain).
"""

from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

#: The chains as this revision declares them (akson.store.chain_rows.CHAINS, frozen here:
#: a later change is a later migration). (chain, res_type, param, target_type, target_param)
_CHAINS = (("Observation.subject:Patient.name", "Observation", "subject", "Patient", "name"),)

_DEF = ("(VALUES " + ", ".join("(" + ", ".join(f"'{v}'" for v in c) + ")" for c in _CHAINS)
        + ") AS d (chain, res_type, param, target_type, target_param)")

#: Advisory locks (first key: this migration's number; second: a hash of the target): a
#: referrer's rows share their target's lock, a target's rows take it alone, each before reading
#: the other side (a fresh snapshot per statement), so a referrer and its target written at once
#: by two transactions see each other's rows. A mass removal of a parameter's rows (one
#: statement, a lock per target) turns them off: `SET LOCAL akson.chain_locks = 'off'`.
_LOCK_NS = 24
_LOCKING = "IF current_setting('akson.chain_locks', true) IS DISTINCT FROM 'off' THEN {} END IF;"
_LOCK_REFERRER = _LOCKING.format(
    f"PERFORM pg_advisory_xact_lock_shared({_LOCK_NS}, "
    "hashtext({row}.target_type || '/' || {row}.target_id));")
_LOCK_TARGET = _LOCKING.format(
    f"PERFORM pg_advisory_xact_lock({_LOCK_NS}, hashtext({{row}}.res_type || '/' || "
    "coalesce((SELECT res_id FROM resource WHERE pk = {row}.res_pk), '')));")

_ABSENT = ("NOT EXISTS (SELECT 1 FROM sp_chain c WHERE c.res_pk = x.res_pk AND c.chain = x.chain "
           "AND c.target_pk = x.target_pk AND c.value_norm = x.value_norm)")

_REFERENCES_ADDED = (
    "INSERT INTO sp_chain (chain, value_norm, res_pk, target_pk) "
    "SELECT x.chain, x.value_norm, x.res_pk, x.target_pk FROM (SELECT DISTINCT d.chain, "
    "n.value_norm, a.res_pk, t.pk AS target_pk FROM (SELECT NEW.*) a JOIN " + _DEF + " ON "
    "a.res_type = d.res_type AND a.param = d.param AND a.target_type = d.target_type "
    "JOIN resource t ON t.res_type = a.target_type AND t.res_id = a.target_id AND NOT t.deleted "
    "JOIN sp_string n ON n.res_pk = t.pk AND n.param = d.target_param) x WHERE " + _ABSENT + ";"
)
_STRINGS_ADDED = (
    "INSERT INTO sp_chain (chain, value_norm, res_pk, target_pk) "
    "SELECT x.chain, x.value_norm, x.res_pk, x.target_pk FROM (SELECT DISTINCT d.chain, "
    "a.value_norm, s.res_pk, a.res_pk AS target_pk FROM (SELECT NEW.*) a JOIN " + _DEF + " ON "
    "a.res_type = d.target_type AND a.param = d.target_param "
    "JOIN resource t ON t.pk = a.res_pk AND NOT t.deleted "
    "JOIN sp_reference s ON s.target_id = t.res_id AND s.target_type = d.target_type "
    "AND s.res_type = d.res_type AND s.param = d.param) x WHERE " + _ABSENT + ";"
)
_REFERENCES_REMOVED = (
    "DELETE FROM sp_chain c USING (SELECT DISTINCT o.res_pk, d.chain, d.param, d.target_type "
    "FROM (SELECT OLD.*) o JOIN " + _DEF + " ON o.res_type = d.res_type AND o.param = d.param "
    "AND o.target_type = d.target_type) o WHERE c.res_pk = o.res_pk AND c.chain = o.chain "
    "AND NOT EXISTS (SELECT 1 FROM sp_reference s JOIN resource t ON t.res_type = s.target_type "
    "AND t.res_id = s.target_id WHERE s.res_pk = c.res_pk AND s.param = o.param "
    "AND s.target_type = o.target_type AND t.pk = c.target_pk);"
)
_STRINGS_REMOVED = (
    "DELETE FROM sp_chain c USING (SELECT DISTINCT o.res_pk, o.param, o.value_norm, d.chain "
    "FROM (SELECT OLD.*) o JOIN " + _DEF + " ON o.res_type = d.target_type AND o.param = "
    "d.target_param) o WHERE c.target_pk = o.res_pk AND c.chain = o.chain "
    "AND c.value_norm = o.value_norm AND NOT EXISTS (SELECT 1 FROM sp_string n "
    "WHERE n.res_pk = o.res_pk AND n.param = o.param AND n.value_norm = o.value_norm);"
)
#: Every chain row as the index tables imply it: the migration's fill, and the tests' check.
IMPLIED = (
    "SELECT DISTINCT d.chain, n.value_norm, s.res_pk, t.pk FROM sp_reference s JOIN " + _DEF + " ON "
    "s.res_type = d.res_type AND s.param = d.param AND s.target_type = d.target_type "
    "JOIN resource t ON t.res_type = s.target_type AND t.res_id = s.target_id AND NOT t.deleted "
    "JOIN sp_string n ON n.res_pk = t.pk AND n.param = d.target_param"
)


def _when(row: str, table: str) -> str:
    """The trigger's WHEN: the row belongs to a chain (others cost no function call)."""
    if table == "sp_reference":
        ors = [f"({row}.res_type = '{c[1]}' AND {row}.param = '{c[2]}' AND {row}.target_type = "
               f"'{c[3]}')" for c in _CHAINS]
    else:
        ors = [f"({row}.res_type = '{c[3]}' AND {row}.param = '{c[4]}')" for c in _CHAINS]
    return " OR ".join(ors)


_TRIGGERS = (  # (table, event, function body); row triggers for a chain's rows only
    ("sp_reference", "insert", _LOCK_REFERRER.format(row="NEW") + _REFERENCES_ADDED),
    ("sp_reference", "delete", _LOCK_REFERRER.format(row="OLD") + _REFERENCES_REMOVED),
    ("sp_string", "insert", _LOCK_TARGET.format(row="NEW") + _STRINGS_ADDED),
    ("sp_string", "delete", _LOCK_TARGET.format(row="OLD") + _STRINGS_REMOVED),
    ("sp_reference", "truncate", "TRUNCATE sp_chain;"),
    ("sp_string", "truncate", "TRUNCATE sp_chain;"),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE TABLE sp_chain (chain varchar(200) NOT NULL, value_norm varchar "
               "COLLATE \"C\" NOT NULL, res_pk bigint NOT NULL, target_pk bigint NOT NULL)")
    # A value's referrers in pk order, with their target for its policy, from the index alone.
    op.execute("CREATE INDEX ix_sp_chain_walk ON sp_chain (chain, value_norm, res_pk) "
               "INCLUDE (target_pk)")
    # A referrer's rows, a target's rows: what the triggers remove. With the chain in the key,
    # so the planner does not prefer walking the whole chain in ix_sp_chain_walk.
    op.execute("CREATE INDEX ix_sp_chain_res ON sp_chain (res_pk, chain)")
    op.execute("CREATE INDEX ix_sp_chain_target ON sp_chain (target_pk, chain, value_norm)")
    for table, event, body in _TRIGGERS:
        name = f"akson_chain_{table}_{event}"
        op.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql "
                   "SET plan_cache_mode = force_generic_plan AS $$ "
                   f"BEGIN {body} RETURN NULL; END $$")
        row = {"insert": "NEW", "delete": "OLD"}.get(event)
        level = f"FOR EACH ROW WHEN ({_when(row, table)})" if row else "FOR EACH STATEMENT"
        op.execute(f"CREATE TRIGGER {table}_chained_{event} AFTER {event.upper()} ON {table} "
                   f"{level} EXECUTE FUNCTION {name}()")
    op.execute(f"INSERT INTO sp_chain (chain, value_norm, res_pk, target_pk) {IMPLIED}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, event, _ in _TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_chained_{event} ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS akson_chain_{table}_{event}()")
    op.execute("DROP TABLE IF EXISTS sp_chain")
