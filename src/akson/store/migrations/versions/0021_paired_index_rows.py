"""Paired index rows (a code with its date or its patient) get their indexes and are built.

Revision ID: 0021
Revises: 0020

ADR 0018, akson.fhir.pairs. The rows live in `sp_composite` under names such as `code+date`.
`ix_sp_composite_pair` finds a code's rows for one patient (`v_code`) or in a date range
(`v_code` NULL, then `v_low`), ending in `res_pk` so a range is read from the index alone.
`ix_sp_composite_pair_long` holds the few spans longer than 31 days, as `ix_sp_date_long` does
for `sp_date` (migration 0016); its predicate must stay the literal `search_sql.SHORT_SPAN`.
`ix_sp_composite_pair_walk` (PostgreSQL, which alone walks it) holds the short ones by bucket
(`v_value`) in pk order, carrying their hull, for `search_sql.pair_date_walk`.

A database that already holds resources of a paired type gets a reindex job for each pair's
token parameter: the server builds the rows online, and until the job is done no search uses
them (the parameter is pending).
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_sp_composite_pair", "sp_composite",
                    ["res_type", "param", "code", "system", "v_code", "v_low", "v_high", "res_pk"])
    op.execute("CREATE INDEX ix_sp_composite_pair_long ON sp_composite "
               "(res_type, param, code, system, v_code, v_high, v_low, res_pk) "
               "WHERE v_high - v_low > 2678400000000")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE INDEX ix_sp_composite_pair_walk ON sp_composite "
                   "(res_type, param, code, system, v_value, res_pk) INCLUDE (v_low, v_high) "
                   "WHERE v_code IS NULL AND v_value IS NOT NULL AND v_low IS NOT NULL")
    _queue_reindex()


def _queue_reindex() -> None:
    from akson.fhir import dates
    from akson.fhir.pairs import PAIRS
    from akson.fhir.searchparams import SearchParamRegistry

    bind = op.get_bind()
    types = sorted({p.res_type for p in PAIRS})
    marks = ", ".join(f":t{i}" for i in range(len(types)))
    held = bind.execute(sa.text(f"SELECT 1 FROM resource WHERE res_type IN ({marks}) LIMIT 1"),
                        {f"t{i}": t for i, t in enumerate(types)}).first()
    if held is None:
        return  # nothing stored yet: every write from now on writes its pairs
    registry = SearchParamRegistry.default()
    tokens = {registry.get(p.res_type, p.token) for p in PAIRS}
    for param in sorted((t for t in tokens if t is not None), key=lambda t: t.url):
        bind.execute(sa.text(
            "INSERT INTO reindex_job (action, resource_id, param_url, param_code, base, status, "
            "done, created) VALUES ('index', NULL, :url, :code, :base, 'queued', 0, :now)"),
            {"url": param.url, "code": param.code, "base": " ".join(param.base),
             "now": dates.now_us()})


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_sp_composite_pair_walk")
    op.execute("DROP INDEX IF EXISTS ix_sp_composite_pair_long")
    op.drop_index("ix_sp_composite_pair", "sp_composite")
    op.execute("DELETE FROM sp_composite WHERE param LIKE '%+%'")
