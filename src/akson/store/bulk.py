"""Bulk loading: many new resources in one transaction, at COPY speed on PostgreSQL.

The importer and the demo generator load hundreds of thousands of resources; one statement per
resource would make that take hours. Resources whose id already exists take the normal update
path, so a bulk load is still an ordinary, versioned write.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from akson.fhir import dates, indexing, jsonio
from akson.fhir.search import index_rows
from akson.fhir.searchparams import SearchParamRegistry
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


@dataclass(slots=True)
class Prepared:
    """One new resource ready to copy in: all but its primary key. Picklable, so worker
    processes can prepare while the database writes (see `akson.importer`)."""

    res_type: str
    res_id: str
    last_updated: int  # µs since epoch, as in meta.lastUpdated
    content: bytes  # the stored JSON, exactly as it will be served
    patient_id: str | None
    rows: dict[str, list[tuple[Any, ...]]]  # index table → rows without (res_pk, res_type)


def prepare(res_type: str, res_id: str, resource: dict, registry: SearchParamRegistry,
            now: int) -> Prepared:
    """Version 1 of `resource` with its index rows (pure: no database)."""
    doc = _with_meta(resource, res_id, 1, now)
    found, extra = index_rows(doc, registry)
    rows: dict[str, list[tuple[Any, ...]]] = {}
    for table, (field, _) in _INDEX_COLUMNS.items():
        rows[table] = getattr(found, field)
    for table, (field, _) in _EXTRA_COLUMNS.items():
        rows[table] = getattr(extra, field)
    rows["sp_token"] = [*rows["sp_token"], *extra.ref_identifiers]
    return Prepared(res_type, res_id, now, jsonio.dumps(doc),
                    indexing.patient_compartment(doc, found), rows)


async def bulk_create(s: Session, items: Sequence[tuple[str, str, dict]], *,
                      assume_new: bool = False) -> list[Stored]:
    """Store `(type, id, resource)` items as version 1 (or a new version where the id exists).

    Returns the stored versions in the order of `items`. `assume_new` skips the lookup of
    existing ids, for ids the caller has just generated. Everything runs in the caller's
    session: it commits or rolls back with it.
    """
    now = dates.now_us()
    return await bulk_create_prepared(
        s, [prepare(t, i, r, s.registry, now) for t, i, r in items], assume_new=assume_new)


async def bulk_create_prepared(s: Session, items: Sequence[Prepared], *,
                               assume_new: bool = False,
                               new_version: NewVersion | None = None) -> list[Stored]:
    """`bulk_create` for resources already prepared (by this process or a worker)."""
    if not items:
        return []
    fresh, later = await _split(s, items, assume_new=assume_new)
    created = await _copy_new(s, fresh) if fresh else {}
    updated: dict[tuple[str, str], Stored] = {}
    for p in later:
        updated[(p.res_type, p.res_id)] = await _new_version(s, p.res_type, p.res_id, p.content,
                                                             new_version)
    return [updated.get((p.res_type, p.res_id)) or created[(p.res_type, p.res_id)] for p in items]


async def _copy_new(s: Session, fresh: Sequence[Prepared]) -> dict[tuple[str, str], Stored]:
    out: dict[tuple[str, str], Stored] = {}
    pks = await _allocate_pks(s, len(fresh))
    resource_rows: list[tuple[Any, ...]] = []
    version_rows: list[tuple[Any, ...]] = []
    index_rows: dict[str, list[tuple[Any, ...]]] = {t: [] for t in (*_INDEX_COLUMNS,
                                                                    *_EXTRA_COLUMNS)}
    for pk, p in zip(pks, fresh, strict=True):
        now = p.last_updated
        resource_rows.append((pk, p.res_type, p.res_id, 1, now, False, p.patient_id, p.content,
                              *s.writer))
        version_rows.append((pk, p.res_type, p.res_id, 1, now, False, "POST", None))
        for table, rows in p.rows.items():
            index_rows[table].extend((pk, p.res_type, *row) for row in rows)
        out[(p.res_type, p.res_id)] = Stored(p.res_type, p.res_id, 1, now, False, p.content, "POST")
    await s.tx.copy_rows("resource", ("pk", "res_type", "res_id", "version", "last_updated",
                                      "deleted", "patient_id", "content", "org", "unit"),
                         resource_rows)
    await s.tx.copy_rows("resource_version", ("res_pk", "res_type", "res_id", "version",
                                              "last_updated", "deleted", "method", "content"),
                         version_rows)
    for table, (_, columns) in (*_INDEX_COLUMNS.items(), *_EXTRA_COLUMNS.items()):
        await s.tx.copy_rows(table, ("res_pk", "res_type", "param", *columns), index_rows[table])
    return out


# --- PostgreSQL: rows formatted for COPY by the preparing process --------------------------

RESOURCE_COLUMNS = ("pk", "res_type", "res_id", "version", "last_updated", "deleted", "patient_id",
                    "content")
VERSION_COLUMNS = ("res_pk", "res_type", "res_id", "version", "last_updated", "deleted", "method",
                   "content")


@dataclass(slots=True)
class CopyReady:
    """One new resource as COPY text lines per table, primary key included (see `copy_ready`)."""

    res_type: str
    res_id: str
    content: bytes
    blocks: dict[str, bytes]  # table → its lines for this resource
    patient_id: str | None = None  # the patient compartment it belongs to (for the audit)


def copy_ready(p: Prepared, pk: int) -> CopyReady:
    """`p` as PostgreSQL COPY text lines, so the writing process only concatenates and sends."""
    blocks = {
        "resource": _line((pk, p.res_type, p.res_id, 1, p.last_updated, False, p.patient_id,
                           p.content)),
        "resource_version": _line((pk, p.res_type, p.res_id, 1, p.last_updated, False, "POST",
                                   None)),
    }
    head = _fields((pk, p.res_type))
    for table, rows in p.rows.items():
        if rows:
            blocks[table] = "".join([f"{head}\t{_fields(row)}\n" for row in rows]).encode()
    return CopyReady(p.res_type, p.res_id, p.content, blocks, p.patient_id)


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]")


def _line(values: Sequence[Any]) -> bytes:
    """One line of COPY text format (NULL is \\N; text escaped; bytea as \\x hex)."""
    return (_fields(values) + "\n").encode()


def _fields(values: Sequence[Any]) -> str:
    """Tab-separated COPY text fields. Dispatches on the exact class, most common first: this
    runs ~20 times per imported resource."""
    out = []
    for v in values:
        cls = v.__class__
        if cls is str:
            out.append(v.translate(_ESCAPES) if _NEEDS_ESCAPE.search(v) else v)
        elif v is None:
            out.append("\\N")
        elif cls is int:
            out.append(str(v))
        elif cls is bool:
            out.append("t" if v else "f")
        elif cls is bytes:
            out.append("\\\\x" + v.hex())
        elif cls is float:
            out.append(repr(v))
        else:
            out.append(str(v))
    return "\t".join(out)


async def bulk_create_copy_ready(s: Session, items: Sequence[CopyReady], *,
                                 new_version: NewVersion | None = None) -> int:
    """Store new resources formatted by `copy_ready` (PostgreSQL, bulk session); an id already
    stored, or seen earlier in `items`, becomes a new version instead. Returns how many."""
    fresh, later = await _split(s, items)
    tables: dict[str, tuple[str, ...]] = {"resource": RESOURCE_COLUMNS,
                                          "resource_version": VERSION_COLUMNS}
    tables |= {t: ("res_pk", "res_type", "param", *cols)
               for t, (_, cols) in (*_INDEX_COLUMNS.items(), *_EXTRA_COLUMNS.items())}
    for table, columns in tables.items():
        data = b"".join(c.blocks.get(table, b"") for c in fresh)
        if data:
            await s.tx.copy_text(table, columns, data)
    for c in later:
        await _new_version(s, c.res_type, c.res_id, c.content, new_version)
    return len(items)


_Item = TypeVar("_Item", Prepared, CopyReady)

#: Stores an id seen again (already stored, or earlier in the batch) as its next version:
#: (type, id, the resource) → (stored version, created). The default is `Session.update`; the
#: access gate passes its own, so such updates get a write's checks and audit.
NewVersion = Callable[[str, str, dict[str, Any]], Awaitable[tuple[Stored, bool]]]


async def _split(s: Session, items: Sequence[_Item], *, assume_new: bool = False
                 ) -> tuple[list[_Item], list[_Item]]:
    """(new, again): the first occurrence of an id not yet stored is copied in; an id seen
    again — stored already, or earlier in this batch (NDJSON exports repeat shared resources)
    — becomes a new version."""
    existing = set() if assume_new else await _existing(s, [(i.res_type, i.res_id) for i in items])
    fresh: dict[tuple[str, str], _Item] = {}
    again: list[_Item] = []
    for item in items:
        key = (item.res_type, item.res_id)
        if key in existing or key in fresh:
            again.append(item)
        else:
            fresh[key] = item
    return list(fresh.values()), again


async def _new_version(s: Session, res_type: str, res_id: str, content: bytes,
                       new_version: NewVersion | None) -> Stored:
    """Store `content` as the next version of a resource, unless it equals the current one
    apart from `meta.versionId`/`lastUpdated` (a re-delivered resource is not a change: bulk
    exports repeat shared Organizations and Practitioners in every file); the version stored."""
    resource = jsonio.loads(content)
    current = await s.read(res_type, res_id, for_update=True)
    if current is not None and current.content is not None and not current.deleted \
            and _without_version(jsonio.loads(current.content)) == _without_version(resource):
        return current
    stored, _ = await (new_version or s.update)(res_type, res_id, resource)
    return stored


def _without_version(doc: dict) -> dict:
    meta = {k: v for k, v in (doc.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    return {**doc, "meta": meta}


async def allocate_pks(s: Session, n: int) -> list[int]:
    """`n` primary keys for new resources from PostgreSQL's sequence (never reused)."""
    return await _allocate_pks(s, n)


async def _existing(s: Session, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    by_type: dict[str, list[str]] = {}
    for res_type, res_id in keys:
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
