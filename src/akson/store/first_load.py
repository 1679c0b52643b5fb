"""A first bulk load into an empty store builds its lookup indexes after the copy (PostgreSQL).

Adding each index row to B-trees the load itself grows was three fifths of PostgreSQL's work
in a Synthea import; building an index from the loaded rows sorts them once (ADR 0023).
`begin` drops the lookup indexes of the tables a bulk load writes and turns off the triggers
that add chain rows (ADR 0020), noting each — and each table to analyse — in
`first_load_pending` in the same transaction; `restore_chain_rows` and `build` do what is
noted. A note left by an import killed part way is done by the next `finish`: `akson db
upgrade`, a server start or the next import run it.

Synchronous (psycopg), so the migration step can call it; `akson import` runs it in threads.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from akson.store import chain_rows
from akson.store.bulk import COPY_TABLES
from akson.store.database import pg_conninfo

#: Tables whose lookup indexes wait for the end of a first load. `sp_chain` is one: it stays
#: empty while its insert triggers are off, so the triggers that remove rows find none quickly.
TABLES = list(COPY_TABLES)
#: Tables the chain fill analyses itself (it joins the first two, and fills the third).
_CHAIN_TABLES = ("sp_reference", "sp_string", "sp_chain")

#: Memory for each build's sort: a million index rows sort in memory, not in temporary files.
BUILD_MEMORY = "256MB"

#: The indexes put off: not unique (the load checks ids against those) and not led by `res_pk`
#: (a line whose id came earlier is stored as an update, which replaces that resource's index
#: rows by its key). An expression index has no first column and is put off too.
_LOOKUP_INDEXES = (
    "SELECT quote_ident(c.relname), t.relname, pg_get_indexdef(c.oid) "
    "FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid "
    "JOIN pg_class t ON t.oid = x.indrelid "
    "LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = x.indkey[0] "
    "WHERE t.relnamespace = current_schema()::regnamespace AND t.relname = ANY(%s) "
    "AND NOT x.indisunique AND a.attname IS DISTINCT FROM 'res_pk' ORDER BY 1"
)
#: The next note to do: a table to analyse whose indexes are all built (its statistics then
#: include its expression indexes'), else an index, largest table first so two builders end
#: close together. A builder claims its note, so two finishes at once share the work.
_NEXT = (
    "SELECT name, kind, table_name, definition FROM first_load_pending p "
    "WHERE kind = 'index' OR kind = 'analyze' AND NOT EXISTS (SELECT 1 FROM "
    "first_load_pending i WHERE i.kind = 'index' AND i.table_name = p.table_name) "
    "ORDER BY kind = 'index', pg_relation_size(to_regclass(table_name)) DESC, name LIMIT 1 "
    "FOR UPDATE SKIP LOCKED"
)
_NOTE = "INSERT INTO first_load_pending (name, table_name, kind, definition) VALUES (%s, %s, %s, %s)"


def _connect(database_url: str) -> psycopg.Connection:
    return psycopg.connect(pg_conninfo(database_url), autocommit=True, options="-c jit=off")


def begin(database_url: str) -> bool:
    """If the store holds no resource, put its lookup indexes and chain-row insert triggers
    off until `finish`; True if it did. The store then answers searches slowly and without
    chain rows: a first load is for a store nobody uses yet."""
    with _connect(database_url) as conn, conn.transaction():
        # Writers wait for this transaction, so none adds a resource after the check.
        conn.execute("LOCK TABLE resource IN SHARE ROW EXCLUSIVE MODE")
        if conn.execute("SELECT EXISTS (SELECT 1 FROM resource) "
                        "OR EXISTS (SELECT 1 FROM first_load_pending)").fetchone() != (False,):
            return False
        for name, table, definition in conn.execute(_LOOKUP_INDEXES, (TABLES,)).fetchall():
            assert definition.startswith("CREATE INDEX "), definition
            conn.execute(_NOTE, (name, table, "index", definition.replace(
                "CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1)))
            conn.execute(f"DROP INDEX {name}")  # a name from the catalog, quoted by it
        for table, trigger in chain_rows.INSERT_TRIGGERS:
            conn.execute(_NOTE, (trigger, table, "trigger", None))
            conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(
                sql.Identifier(table), sql.Identifier(trigger)))
        for table in TABLES:
            if table not in _CHAIN_TABLES:
                conn.execute(_NOTE, (f"analyze {table}", table, "analyze", None))
    return True


def pending(database_url: str) -> int:
    """How many notes wait for `finish`."""
    with _connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM first_load_pending").fetchone()
        return int(row[0]) if row else 0


def build(database_url: str) -> int:
    """Build the noted indexes and analyse the noted tables, one after another, until no note
    is left unclaimed; how many were done.

    Each build or ANALYZE and the removal of its note commit together. A definition is run as
    the catalog wrote it (`pg_get_indexdef`): DDL takes no parameters."""
    done = 0
    with _connect(database_url) as conn:
        while True:
            with conn.transaction():
                row = conn.execute(_NEXT).fetchone()
                if row is None:
                    return done
                name, kind, table, definition = row
                if kind == "index":
                    conn.execute(f"SET LOCAL maintenance_work_mem = '{BUILD_MEMORY}'")
                    # Two builders already keep both cores busy; parallel workers only queued.
                    conn.execute("SET LOCAL max_parallel_maintenance_workers = 0")
                    conn.execute(definition)
                else:
                    conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
                conn.execute("DELETE FROM first_load_pending WHERE name = %s", (name,))
            done += 1


def restore_chain_rows(database_url: str) -> None:
    """Turn the noted chain triggers back on and add the chain rows the load implies, in one
    transaction: enabling a trigger waits for the writes under way and holds off new ones
    until the rows are in, so no write falls between the fill and its trigger. Runs beside
    `build`: the fill joins whole tables and needs no lookup index."""
    with _connect(database_url) as conn, conn.transaction():
        triggers = conn.execute("SELECT name, table_name FROM first_load_pending "
                                "WHERE kind = 'trigger' ORDER BY name FOR UPDATE").fetchall()
        if not triggers:
            return
        for trigger, table in triggers:
            conn.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER {}").format(
                sql.Identifier(table), sql.Identifier(trigger)))
        # Statistics first: planned as if the freshly loaded tables were empty, the fill ran a
        # nested loop over every reference row (13 s for a Synthea import instead of 1).
        conn.execute("ANALYZE sp_reference, sp_string")
        conn.execute(chain_rows.FILL)
        conn.execute("ANALYZE sp_chain")  # sees the fill: same transaction
        conn.execute("DELETE FROM first_load_pending WHERE kind = 'trigger'")


def finish(database_url: str) -> None:
    """Do everything a first load put off (nothing on SQLite, or when nothing is noted)."""
    if not database_url.startswith("postgres") or not pending(database_url):
        return
    restore_chain_rows(database_url)
    build(database_url)
