"""Maintained counts of common codes, for `_total=accurate` (PostgreSQL).

Revision ID: 0023
Revises: 0022

ADR 0019, akson.store.token_counts. `sp_token_count` holds rows (type, parameter, system,
code, n) whose sum per key is the number of `sp_token` rows of that key. A key is counted once
it is *promoted* (it has a row); from then on every statement that inserts, deletes or updates
`sp_token` rows of it adds one row with the change, in the same transaction, so a reader sees
the sum its snapshot holds. Rows are appended, never updated, so writers of one code never
wait on each other; a background fold sums them. SQLite counts live, as before.
"""

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

_DELTA = (
    "INSERT INTO sp_token_count (res_type, param, system, code, n) "
    "SELECT t.res_type, t.param, t.system, t.code, {sign} count(*) FROM {rows} t "
    "WHERE EXISTS (SELECT 1 FROM sp_token_count c WHERE c.res_type = t.res_type "
    "AND c.param = t.param AND c.code = t.code "
    "AND (c.system = t.system OR (c.system IS NULL AND t.system IS NULL))) "
    "GROUP BY 1, 2, 3, 4;"
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE TABLE sp_token_count (res_type varchar(64) NOT NULL, param varchar(100) "
               "NOT NULL, system varchar COLLATE \"C\", code varchar COLLATE \"C\", "
               "n bigint NOT NULL)")
    op.execute("CREATE INDEX ix_sp_token_count ON sp_token_count (res_type, param, code, system)")
    op.execute(
        "CREATE FUNCTION akson_token_count_added() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN {_DELTA.format(sign='', rows='added')} RETURN NULL; END $$")
    op.execute(
        "CREATE FUNCTION akson_token_count_removed() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN {_DELTA.format(sign='-', rows='removed')} RETURN NULL; END $$")
    op.execute(
        "CREATE FUNCTION akson_token_count_changed() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN {_DELTA.format(sign='-', rows='removed')} {_DELTA.format(sign='', rows='added')} "
        "RETURN NULL; END $$")
    op.execute("CREATE TRIGGER sp_token_counted_insert AFTER INSERT ON sp_token "
               "REFERENCING NEW TABLE AS added FOR EACH STATEMENT "
               "EXECUTE FUNCTION akson_token_count_added()")
    op.execute("CREATE TRIGGER sp_token_counted_delete AFTER DELETE ON sp_token "
               "REFERENCING OLD TABLE AS removed FOR EACH STATEMENT "
               "EXECUTE FUNCTION akson_token_count_removed()")
    op.execute("CREATE TRIGGER sp_token_counted_update AFTER UPDATE ON sp_token "
               "REFERENCING OLD TABLE AS removed NEW TABLE AS added FOR EACH STATEMENT "
               "EXECUTE FUNCTION akson_token_count_changed()")
    # Emptied wholesale, the table's keys are forgotten: they count live until promoted again.
    op.execute("CREATE FUNCTION akson_token_count_emptied() RETURNS trigger LANGUAGE plpgsql "
               "AS $$ BEGIN DELETE FROM sp_token_count; RETURN NULL; END $$")
    op.execute("CREATE TRIGGER sp_token_counted_truncate AFTER TRUNCATE ON sp_token "
               "FOR EACH STATEMENT EXECUTE FUNCTION akson_token_count_emptied()")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for event in ("insert", "delete", "update", "truncate"):
        op.execute(f"DROP TRIGGER IF EXISTS sp_token_counted_{event} ON sp_token")
    for fn in ("added", "removed", "changed", "emptied"):
        op.execute(f"DROP FUNCTION IF EXISTS akson_token_count_{fn}()")
    op.execute("DROP TABLE IF EXISTS sp_token_count")
