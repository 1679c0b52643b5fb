"""A first bulk load into an empty store builds its lookup indexes after the copy (PostgreSQL).

Adding each index row to B-trees the load itself grows was three fifths of PostgreSQL's work
in a Synthea import; building an index from the loaded rows sorts them once (ADR 0023).
`begin` drops the lookup indexes of the tables a bulk load writes and turns off the triggers
that add chain rows (ADR 0020), noting each in `first_load_pending` in the same transaction;
`finish` builds what is noted and adds the chain rows. A note left by an import killed part way
is built by the next `finish` — `akson db upgrade`, a server start or the next import run it.

Synchronous (psycopg), so the migration step can call it; `akson import` runs builders in
threads.
"""

from __future__ import annotations

import psycopg

from akson.store import chain_rows
from akson.store.bulk import COPY_TABLES
from akson.store.database import pg_conninfo

#: Tables whose lookup indexes wait for the end of a first load. `sp_chain` is one: it stays
#: empty while its insert triggers are off, so the triggers that remove rows find none quickly.
TABLES = list(COPY_TABLES)

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
#: The next index to build, largest table first (so two builders end close together); a
#: builder claims its note, so two finishes at once share the work.
_NEXT_INDEX = (
    "SELECT name, definition FROM first_load_pending WHERE kind = 'index' "
    "ORDER BY pg_relation_size(to_regclass(table_name)) DESC, name LIMIT 1 "
    "FOR UPDATE SKIP LOCKED"
)


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
            conn.execute("INSERT INTO first_load_pending (name, table_name, kind, definition) "
                         "VALUES (%s, %s, 'index', %s)",
                         (name, table, definition.replace("CREATE INDEX ",
                                                          "CREATE INDEX IF NOT EXISTS ", 1)))
            conn.execute(f"DROP INDEX {name}")  # a name from the catalog, quoted by it
        for table, trigger in chain_rows.INSERT_TRIGGERS:
            conn.execute("INSERT INTO first_load_pending (name, table_name, kind) "
                         "VALUES (%s, %s, 'trigger')", (trigger, table))
            conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
    return True


def pending(database_url: str) -> int:
    """How many indexes and triggers wait for `finish`."""
    with _connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM first_load_pending").fetchone()
        return int(row[0]) if row else 0


def build_indexes(database_url: str) -> int:
    """Build the noted indexes one after another until none is left unclaimed; how many.

    Each build and the removal of its note commit together. A definition is run as the
    catalog wrote it (`pg_get_indexdef`): DDL takes no parameters."""
    built = 0
    with _connect(database_url) as conn:
        while True:
            with conn.transaction():
                row = conn.execute(_NEXT_INDEX).fetchone()
                if row is None:
                    return built
                conn.execute(f"SET LOCAL maintenance_work_mem = '{BUILD_MEMORY}'")
                conn.execute(row[1])
                conn.execute("DELETE FROM first_load_pending WHERE name = %s", (row[0],))
            built += 1


def restore_chain_rows(database_url: str) -> None:
    """Turn the noted chain triggers back on and add the chain rows the load implies, in one
    transaction: enabling a trigger waits for the writes under way and holds off new ones
    until the rows are in, so no write falls between the fill and its trigger. Run before the
    indexes are built: the fill joins whole tables, and `sp_chain`'s are then built sorted."""
    with _connect(database_url) as conn, conn.transaction():
        triggers = conn.execute("SELECT name, table_name FROM first_load_pending "
                                "WHERE kind = 'trigger' ORDER BY name FOR UPDATE").fetchall()
        if not triggers:
            return
        for trigger, table in triggers:
            conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER {trigger}")  # names we wrote
        # Statistics first: planned as if the freshly loaded tables were empty, the fill ran a
        # nested loop over every reference row (13 s for a Synthea import instead of 1).
        conn.execute("ANALYZE sp_reference, sp_string")
        conn.execute(chain_rows.FILL)
        conn.execute("DELETE FROM first_load_pending WHERE kind = 'trigger'")


def finish(database_url: str) -> None:
    """Build everything a first load put off (nothing to do on SQLite, or when none is)."""
    if not database_url.startswith("postgres") or not pending(database_url):
        return
    restore_chain_rows(database_url)
    build_indexes(database_url)
