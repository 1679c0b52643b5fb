"""Bulk loading: many new resources in one transaction, at COPY speed on PostgreSQL.

The importer and the demo generator load hundreds of thousands of resources; one statement per
resource would make that take hours. Resources whose id already exists take the normal update
path, so a bulk load is still an ordinary, versioned write.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from akson.fhir import dates, indexing, jsonio
from akson.fhir.search import extra_index_rows
from akson.store.repository import Session, Stored, _with_meta

_INDEX_COLUMNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sp_token": ("tokens", ("system", "code")),
    "sp_string": ("strings", ("value_norm", "value_exact")),
    "sp_date": ("dates", ("low", "high")),
    "sp_reference": ("references", ("target_type", "target_id", "url")),
    "sp_quantity": ("quantities", ("value", "system", "code")),
    "sp_number": ("numbers", ("value",)),
    "sp_uri": ("uris", ("uri",)),
    "sp_identifier_type": ("identifier_types", ("type_system", "type_code", "value")),
}
# Search-only rows from `akson.fhir.search.extra_index_rows` (migration 0003).
_EXTRA_COLUMNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sp_token_text": ("texts", ("value_norm",)),
    "sp_composite": ("composites", ("system", "code", "v_system", "v_code", "v_value", "v_low",
                                    "v_high", "v_text")),
}


async def bulk_create(s: Session, items: Sequence[tuple[str, str, dict]], *,
                      assume_new: bool = False) -> list[Stored]:
    """Store `(type, id, resource)` items as version 1 (or a new version where the id exists).

    Returns the stored versions in the order of `items`. `assume_new` skips the lookup of
    existing ids, for ids the caller has just generated. Everything runs in the caller's
    session: it commits or rolls back with it.
    """
    if not items:
        return []
    existing = set() if assume_new else await _existing(s, items)
    fresh = [item for item in items if (item[0], item[1]) not in existing]
    updated: dict[tuple[str, str], Stored] = {}
    for res_type, res_id, resource in items:
        if (res_type, res_id) in existing:
            updated[(res_type, res_id)], _ = await s.update(res_type, res_id, resource)
    created: dict[tuple[str, str], Stored] = {}
    if fresh:
        created = await _copy_new(s, fresh)
    return [updated.get((t, i)) or created[(t, i)] for t, i, _ in items]


async def _copy_new(s: Session, fresh: Sequence[tuple[str, str, dict]]
                    ) -> dict[tuple[str, str], Stored]:
    out: dict[tuple[str, str], Stored] = {}
    pks = await _allocate_pks(s, len(fresh))
    now = dates.now_us()
    resource_rows: list[tuple[Any, ...]] = []
    version_rows: list[tuple[Any, ...]] = []
    index_rows: dict[str, list[tuple[Any, ...]]] = {t: [] for t in (*_INDEX_COLUMNS,
                                                                    *_EXTRA_COLUMNS)}
    for pk, (res_type, res_id, resource) in zip(pks, fresh, strict=True):
        doc = _with_meta(resource, res_id, 1, now)
        rows = indexing.extract(doc, s.registry)
        content = jsonio.dumps(doc)
        resource_rows.append((pk, res_type, res_id, 1, now, False,
                              indexing.patient_compartment(doc, rows), content))
        version_rows.append((pk, res_type, res_id, 1, now, False, "POST", content))
        for table, (field, _) in _INDEX_COLUMNS.items():
            index_rows[table].extend((pk, res_type, *row) for row in getattr(rows, field))
        extra = extra_index_rows(doc, s.registry)
        for table, (field, _) in _EXTRA_COLUMNS.items():
            index_rows[table].extend((pk, res_type, *row) for row in getattr(extra, field))
        index_rows["sp_token"].extend((pk, res_type, *row) for row in extra.ref_identifiers)
        out[(res_type, res_id)] = Stored(res_type, res_id, 1, now, False, content, "POST")
    await s.tx.copy_rows("resource", ("pk", "res_type", "res_id", "version", "last_updated",
                                      "deleted", "patient_id", "content"), resource_rows)
    await s.tx.copy_rows("resource_version", ("res_pk", "res_type", "res_id", "version",
                                              "last_updated", "deleted", "method", "content"),
                         version_rows)
    for table, (_, columns) in (*_INDEX_COLUMNS.items(), *_EXTRA_COLUMNS.items()):
        await s.tx.copy_rows(table, ("res_pk", "res_type", "param", *columns), index_rows[table])
    return out


async def _existing(s: Session, items: Sequence[tuple[str, str, dict]]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    by_type: dict[str, list[str]] = {}
    for res_type, res_id, _ in items:
        by_type.setdefault(res_type, []).append(res_id)
    for res_type, ids in by_type.items():
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ", ".join(["%s"] * len(chunk))
            rows = await s.tx.fetchall(
                f"SELECT res_id FROM resource WHERE res_type = %s AND res_id IN ({marks})",
                (res_type, *chunk),
            )
            found.update((res_type, r[0]) for r in rows)
    return found


async def _allocate_pks(s: Session, n: int) -> list[int]:
    if s.dialect == "postgresql":
        rows = await s.tx.fetchall(
            "SELECT nextval(pg_get_serial_sequence('resource', 'pk')) FROM generate_series(1, %s)",
            (n,),
        )
        return [int(r[0]) for r in rows]
    # SQLite: writers are serialised, so the next rowids are ours until we commit.
    row = await s.tx.fetchone("SELECT COALESCE(MAX(pk), 0) FROM resource")
    start = int(row[0]) if row else 0
    return list(range(start + 1, start + 1 + n))
