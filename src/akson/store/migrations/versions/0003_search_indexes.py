"""Search indexes for token :text, :of-type, reference :identifier and composites; back-filled.

Revision ID: 0003
Revises: 0002

`sp_token_text` holds the folded display texts of tokens (CodeableConcept.text, Coding.display,
Identifier.type.text), `sp_identifier_type` the identifier type codings with their value,
`sp_composite` one row per element of a composite parameter (first component's coding with the
second component's value), so `component-code-value-quantity` pairs code and value of the same
component (https://hl7.org/fhir/R4/search.html#composite). Reference identifiers go to
`sp_token` under the parameter name `<code>:identifier`. Existing resources are back-filled.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_Text = sa.String().with_variant(sa.String(collation="C"), "postgresql")


def _head() -> list[sa.Column]:
    return [sa.Column("res_pk", sa.BigInteger, nullable=False),
            sa.Column("res_type", sa.String(64), nullable=False),
            sa.Column("param", sa.String(100), nullable=False)]


def upgrade() -> None:
    op.create_table("sp_token_text", *_head(), sa.Column("value_norm", _Text, nullable=False))
    op.create_index("ix_sp_token_text_lookup", "sp_token_text", ["res_type", "param", "value_norm"])
    op.create_index("ix_sp_token_text_res", "sp_token_text", ["res_pk"])
    op.create_table("sp_identifier_type", *_head(), sa.Column("type_system", _Text),
                    sa.Column("type_code", _Text), sa.Column("value", _Text, nullable=False))
    op.create_index("ix_sp_identifier_type_lookup", "sp_identifier_type",
                    ["res_type", "param", "value", "type_code"])
    op.create_index("ix_sp_identifier_type_res", "sp_identifier_type", ["res_pk"])
    op.create_table("sp_composite", *_head(), sa.Column("system", _Text), sa.Column("code", _Text),
                    sa.Column("v_system", _Text), sa.Column("v_code", _Text),
                    sa.Column("v_value", sa.Float), sa.Column("v_low", sa.BigInteger),
                    sa.Column("v_high", sa.BigInteger), sa.Column("v_text", _Text))
    op.create_index("ix_sp_composite_lookup", "sp_composite", ["res_type", "param", "code"])
    op.create_index("ix_sp_composite_res", "sp_composite", ["res_pk"])
    _backfill()


def _backfill() -> None:
    """Index what is already stored, in batches (a fresh database has nothing to do)."""
    import orjson

    from akson.fhir import indexing
    from akson.fhir.search import extra_index_rows
    from akson.fhir.searchparams import SearchParamRegistry

    bind = op.get_bind()
    registry = SearchParamRegistry.default()
    last = 0
    while True:
        rows = bind.execute(sa.text(
            "SELECT pk, res_type, content FROM resource WHERE pk > :last AND NOT deleted "
            "ORDER BY pk LIMIT 500"), {"last": last}).fetchall()
        if not rows:
            return
        for pk, res_type, content in rows:
            last = pk
            doc = orjson.loads(bytes(content))
            idx = indexing.extract(doc, registry)
            extra = extra_index_rows(doc, registry)
            _insert(bind, "sp_identifier_type", ("type_system", "type_code", "value"),
                    pk, res_type, idx.identifier_types)
            _insert(bind, "sp_token_text", ("value_norm",), pk, res_type, extra.texts)
            _insert(bind, "sp_token", ("system", "code"), pk, res_type, extra.ref_identifiers)
            _insert(bind, "sp_composite", ("system", "code", "v_system", "v_code", "v_value",
                                           "v_low", "v_high", "v_text"), pk, res_type,
                    extra.composites)


def _insert(bind: sa.engine.Connection, table: str, columns: tuple[str, ...], pk: int,
            res_type: str, rows: list) -> None:
    if not rows:
        return
    names = ", ".join(("res_pk", "res_type", "param", *columns))
    marks = ", ".join(f":c{i}" for i in range(len(columns) + 3))
    bind.execute(sa.text(f"INSERT INTO {table} ({names}) VALUES ({marks})"),
                 [{f"c{i}": v for i, v in enumerate((pk, res_type, *row))} for row in rows])


def downgrade() -> None:
    for table in ("sp_composite", "sp_identifier_type", "sp_token_text"):
        op.drop_table(table)
    op.execute(sa.text("DELETE FROM sp_token WHERE param LIKE :pattern").bindparams(
        pattern="%:identifier"))
