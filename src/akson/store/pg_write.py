"""PostgreSQL: write a resource version with all its index rows in one statement.

Data-modifying CTEs make the resource row, the version row and every index row one round trip
(the generic path needs one per table). All index rows travel as ONE JSON parameter, unpacked by
`json_array_elements` in the server: far cheaper to bind than an array per column, and the
statement text stays fixed, so PostgreSQL prepares it once per connection. All CTEs see the same
snapshot, so on update the DELETEs remove only the old index rows, never the new ones.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson

from akson.fhir.indexing import IndexRows
from akson.fhir.search import ExtraRows
from akson.store.schema import supersede_sql

# (table, IndexRows field, columns after `param`, SQL cast of each element)
_TABLES: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("sp_token", "tokens", ("system", "code"), ("text", "text")),
    ("sp_string", "strings", ("value_norm", "value_exact"), ("text", "text")),
    ("sp_date", "dates", ("low", "high"), ("bigint", "bigint")),
    ("sp_reference", "references", ("target_type", "target_id", "url"), ("text", "text", "text")),
    ("sp_quantity", "quantities", ("value", "system", "code"), ("float8", "text", "text")),
    ("sp_number", "numbers", ("value",), ("float8",)),
    ("sp_uri", "uris", ("uri",), ("text",)),
    # Search-only rows (migration 0003): identifier types from IndexRows, the rest from
    # `akson.fhir.search.extra_index_rows` (reference identifiers are sp_token rows too).
    ("sp_identifier_type", "identifier_types", ("type_system", "type_code", "value"),
     ("text", "text", "text")),
    ("sp_token_text", "texts", ("value_norm",), ("text",)),
    ("sp_token", "ref_identifiers", ("system", "code"), ("text", "text")),
    ("sp_composite", "composites",
     ("system", "code", "v_system", "v_code", "v_value", "v_low", "v_high", "v_text"),
     ("text", "text", "text", "text", "float8", "bigint", "bigint", "text")),
)

_INSERT_RESOURCE = (
    "r AS (INSERT INTO resource (res_type, res_id, version, last_updated, deleted, patient_id, "
    "content, org, unit) VALUES (%(t)s, %(id)s, %(v)s, %(now)s, false, %(pat)s, %(c)b, "
    "%(org)s, %(unit)s) RETURNING pk)"
)
_UPDATE_RESOURCE = (
    "r AS (UPDATE resource SET version = %(v)s, last_updated = %(now)s, deleted = false, "
    "patient_id = %(pat)s, content = %(c)b, org = %(org)s, unit = %(unit)s "
    "WHERE res_type = %(t)s AND res_id = %(id)s RETURNING pk)"
)


@lru_cache(maxsize=256)
def statement(update: bool, filled: tuple[int, ...]) -> str:
    """The write for a resource whose index lists `filled` (positions in _TABLES) hold rows,
    as data-modifying CTEs (`WITH …`, for `HeldWrites.hold`: nothing reads their result). Only
    those tables get an INSERT: an empty CTE still costs the server an executor node. The JSON
    parameter is parsed once, as jsonb, and indexed per table."""
    ctes = [_UPDATE_RESOURCE if update else _INSERT_RESOURCE, "j AS (SELECT %(idx)s::jsonb AS doc)"]
    if update:
        ctes += [f"d_{table} AS (DELETE FROM {table} WHERE res_pk = (SELECT pk FROM r))"
                 for table in dict.fromkeys(table for table, *_ in _TABLES)]
        # The superseded version keeps its content; it reads `resource` as it was before `r`.
        ctes.append(f"o AS ({supersede_sql('%(t)s', '%(id)s', '%(old)s')})")
    ctes.append(
        "v AS (INSERT INTO resource_version (res_pk, res_type, res_id, version, last_updated, "
        "deleted, method, content) SELECT pk, %(t)s, %(id)s, %(v)s, %(now)s, false, %(m)s, "
        "NULL FROM r)"
    )
    for i in filled:
        table, _field, columns, casts = _TABLES[i]
        values = ", ".join(f"(e->>{j + 1})::{cast}" for j, cast in enumerate(casts))
        ctes.append(
            f"i{i}_{table} AS (INSERT INTO {table} (res_pk, res_type, param, {', '.join(columns)}) "
            f"SELECT r.pk, %(t)s, e->>0, {values} "
            f"FROM r, j, jsonb_array_elements(j.doc -> {i}) AS e)"
        )
    return "WITH " + ",\n".join(ctes)


def write(
    update: bool, res_type: str, res_id: str, version: int, now: int, patient_id: str | None,
    content: bytes, method: str, rows: IndexRows, extra: ExtraRows | None = None, *,
    writer: tuple[str | None, str | None] = (None, None),
) -> tuple[str, dict[str, Any]]:
    """The write's CTEs and their bind values; `idx` holds every index row, one list per
    table."""
    extra = extra or ExtraRows()
    index = [getattr(rows, field) if hasattr(rows, field) else getattr(extra, field)
             for _, field, _, _ in _TABLES]
    filled = tuple(i for i, rows_of_table in enumerate(index) if rows_of_table)
    return statement(update, filled), {
        "t": res_type, "id": res_id, "v": version, "old": version - 1, "now": now,
        "pat": patient_id, "c": content, "m": method, "idx": orjson.dumps(index).decode(),
        "org": writer[0], "unit": writer[1]}
