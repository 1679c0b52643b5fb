"""PostgreSQL: write a resource version with all its index rows in one statement.

Data-modifying CTEs make the resource row, the version row and every index row one round trip
(the generic path needs one per table); `unnest` over arrays keeps the statement text fixed, so
PostgreSQL prepares it once per connection. All CTEs see the same snapshot, so on update the
DELETEs remove only the old index rows, never the ones inserted beside them.
"""

from __future__ import annotations

from typing import Any

from akson.fhir.indexing import IndexRows

# (table, IndexRows field, column names, SQL array types)
_TABLES: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("sp_token", "tokens", ("param", "system", "code"), ("text", "text", "text")),
    ("sp_string", "strings", ("param", "value_norm", "value_exact"), ("text", "text", "text")),
    ("sp_date", "dates", ("param", "low", "high"), ("text", "int8", "int8")),
    ("sp_reference", "references", ("param", "target_type", "target_id", "url"),
     ("text", "text", "text", "text")),
    ("sp_quantity", "quantities", ("param", "value", "system", "code"),
     ("text", "float8", "text", "text")),
    ("sp_number", "numbers", ("param", "value"), ("text", "float8")),
    ("sp_uri", "uris", ("param", "uri"), ("text", "text")),
)

_INSERT_RESOURCE = (
    "r AS (INSERT INTO resource (res_type, res_id, version, last_updated, deleted, patient_id, "
    "content) VALUES (%(t)s, %(id)s, %(v)s, %(now)s, false, %(pat)s, %(c)s) RETURNING pk)"
)
_UPDATE_RESOURCE = (
    "r AS (UPDATE resource SET version = %(v)s, last_updated = %(now)s, deleted = false, "
    "patient_id = %(pat)s, content = %(c)s WHERE res_type = %(t)s AND res_id = %(id)s "
    "RETURNING pk)"
)


def _statement(update: bool) -> str:
    ctes = [_UPDATE_RESOURCE if update else _INSERT_RESOURCE]
    if update:
        ctes += [f"d_{table} AS (DELETE FROM {table} WHERE res_pk = (SELECT pk FROM r))"
                 for table, *_ in _TABLES]
    ctes.append(
        "v AS (INSERT INTO resource_version (res_pk, res_type, res_id, version, last_updated, "
        "deleted, method, content) SELECT pk, %(t)s, %(id)s, %(v)s, %(now)s, false, %(m)s, "
        "%(c)s FROM r)"
    )
    for table, field, columns, types in _TABLES:
        names = [f"{field}_{i}" for i in range(len(columns))]
        arrays = ", ".join(f"%({n})s::{t}[]" for n, t in zip(names, types, strict=True))
        ctes.append(
            f"i_{table} AS (INSERT INTO {table} (res_pk, res_type, {', '.join(columns)}) "
            f"SELECT r.pk, %(t)s, x.* FROM r, unnest({arrays}) AS x)"
        )
    return "WITH " + ",\n".join(ctes) + "\nSELECT pk FROM r"


INSERT_SQL = _statement(update=False)
UPDATE_SQL = _statement(update=True)


def params(
    res_type: str, res_id: str, version: int, now: int, patient_id: str | None, content: bytes,
    method: str, rows: IndexRows,
) -> dict[str, Any]:
    """Bind values for INSERT_SQL / UPDATE_SQL: index rows transposed into one array per column."""
    out: dict[str, Any] = {"t": res_type, "id": res_id, "v": version, "now": now,
                           "pat": patient_id, "c": content, "m": method}
    for _, field, columns, _types in _TABLES:
        values = getattr(rows, field)
        for i in range(len(columns)):
            out[f"{field}_{i}"] = [row[i] for row in values]
    return out
