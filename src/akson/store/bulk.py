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


_COPY_COLUMNS: dict[str, tuple[str, ...]] = {
    "resource": RESOURCE_COLUMNS, "resource_version": VERSION_COLUMNS,
    **{t: ("res_pk", "res_type", "param", *cols)
       for t, (_, cols) in (*_INDEX_COLUMNS.items(), *_EXTRA_COLUMNS.items())}}
#: The tables a bulk load writes (and the triggers' `sp_chain`, migration 0024): those whose
#: statistics it changes.
COPY_TABLES = (*_COPY_COLUMNS, "sp_chain")


@dataclass(slots=True)
class CopyReady:
    """One new resource as COPY text lines per table, primary key included (see `copy_ready`)."""

    res_type: str
    res_id: str
    content: bytes
    blocks: dict[str, bytes]  # table → its lines for this resource
    patient_id: str | None = None  # the patient compartment it belongs to (for the audit)


def copy_ready(p: Prepared, pk: int, *, plain: bool = False) -> CopyReady:
    """`p` as PostgreSQL COPY text lines, so the writing process only concatenates and sends.

    `plain`: the caller knows no text value holds a backslash, tab, line feed or carriage
    return, so none is looked for. True of every value derived from a JSON line without a
    backslash: JSON writes those characters in strings only as escapes (RFC 8259, section 7),
    and normalising, splitting or joining its strings adds none.
    """
    fields = _plain_fields if plain else _fields
    resource = _fields((pk, p.res_type, p.res_id, 1, p.last_updated, False, p.patient_id))
    blocks = {
        "resource": b"%s\t%s\n" % (resource.encode(), bytea_field(p.content)),
        "resource_version": _line((pk, p.res_type, p.res_id, 1, p.last_updated, False, "POST",
                                   None)),
    }
    head = f"{pk}\t{_fields((p.res_type,))}\t"
    for table, rows in p.rows.items():
        if rows:
            blocks[table] = "".join([f"{head}{fields(row)}\n" for row in rows]).encode()
    return CopyReady(p.res_type, p.res_id, p.content, blocks, p.patient_id)


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]")


def _line(values: Sequence[Any]) -> bytes:
    """One line of COPY text format (NULL is \\N; text escaped; bytea as \\x hex)."""
    return (_fields(values) + "\n").encode()


def _fields(values: Sequence[Any]) -> str:
    """Tab-separated COPY text fields, text escaped where it needs it."""
    return "\t".join([(v.translate(_ESCAPES) if _NEEDS_ESCAPE.search(v) else v)
                      if v.__class__ is str else _text(v) for v in values])


def _plain_fields(values: Sequence[Any]) -> str:
    """`_fields` for values known to need no escapes (see `copy_ready`): ~20 rows a resource.
    NULL, the commonest value that is not text, is written without a call."""
    return "\t".join([v if v.__class__ is str else "\\N" if v is None else _text(v)
                      for v in values])


def bytea_field(v: bytes) -> bytes:
    """bytea as a COPY text field. UTF-8 without tab, LF, CR or NUL (stored JSON: orjson writes
    none raw) goes in bytea's escape format, half the bytes of hex for the database to read
    (a quarter less time to copy in): each backslash doubled for bytea, then again for COPY.
    Anything else goes in hex."""
    # Four byte searches: a regex character class took ten times as long on a 1 kB resource.
    if not (b"\t" in v or b"\n" in v or b"\r" in v or b"\x00" in v) and (
            v.isascii() or _utf8(v)):
        return v.replace(b"\\", b"\\\\\\\\")
    return b"\\\\x" + v.hex().encode()


def _utf8(v: bytes) -> bool:
    try:
        v.decode()
    except UnicodeDecodeError:
        return False
    return True


def _text(v: Any) -> str:
    """A value that is not a str, as COPY text."""
    if v is None:
        return "\\N"
    cls = v.__class__
    if cls is int:
        return str(v)
    if cls is bool:
        return "t" if v else "f"
    if cls is bytes:
        return bytea_field(v).decode()
    if cls is float:
        return repr(v)
    return str(v)


@dataclass(slots=True)
class CopyChunk:
    """New resources as COPY text, one block per table for all of them (see `CopyChunk.of`).

    What an import worker hands back: a dozen byte strings and a few lists of numbers per
    thousand resources, not a thousand records, so passing it between processes costs little.
    `ends[table][i]` is where resource i's lines end in `blocks[table]`.
    """

    keys: list[tuple[str, str]]  # (type, id) of each resource, in order
    patients: list[str | None]  # the patient compartment of each (for the audit)
    blocks: dict[str, bytes]
    ends: dict[str, list[int]]

    @classmethod
    def of(cls, items: Sequence[CopyReady]) -> CopyChunk:
        """The items' lines, joined per table in their order."""
        blocks: dict[str, list[bytes]] = {t: [] for t in _COPY_COLUMNS}
        ends: dict[str, list[int]] = {t: [] for t in _COPY_COLUMNS}
        sizes = dict.fromkeys(_COPY_COLUMNS, 0)
        for item in items:
            for table, parts in blocks.items():
                lines = item.blocks.get(table)
                if lines:
                    parts.append(lines)
                    sizes[table] += len(lines)
                ends[table].append(sizes[table])
        return cls([(i.res_type, i.res_id) for i in items], [i.patient_id for i in items],
                   {t: b"".join(parts) for t, parts in blocks.items()}, ends)

    def only(self, keep: Sequence[int]) -> dict[str, bytes]:
        """The blocks with the lines of the resources at `keep` (ascending) alone."""
        return {table: b"".join([self._lines(table, i) for i in keep]) for table in self.blocks}

    def content(self, i: int) -> bytes:
        """Resource i's stored JSON, read back from its line (the last field, see `bytea_field`)."""
        line = self._lines("resource", i)
        field = line[line.rindex(b"\t") + 1:].rstrip(b"\n")
        if field.startswith(b"\\\\x"):
            return bytes.fromhex(field[3:].decode())
        return field.replace(b"\\\\\\\\", b"\\")

    def _lines(self, table: str, i: int) -> bytes:
        ends = self.ends[table]
        return self.blocks[table][ends[i - 1] if i else 0:ends[i]]


def keys_of(items: Sequence[Prepared] | CopyChunk) -> list[tuple[str, str]]:
    """(type, id) of each resource in `items`, in order."""
    return items.keys if isinstance(items, CopyChunk) else [(i.res_type, i.res_id) for i in items]


async def bulk_create_copy_ready(s: Session, items: CopyChunk | Sequence[CopyReady], *,
                                 new_version: NewVersion | None = None) -> int:
    """Store new resources formatted by `copy_ready` (PostgreSQL, bulk session); an id already
    stored, or seen earlier in `items`, becomes a new version instead. Returns how many."""
    chunk = items if isinstance(items, CopyChunk) else CopyChunk.of(items)
    fresh, later = await _split_keys(s, chunk.keys)
    blocks = chunk.blocks if not later else chunk.only(fresh)
    for table, columns in _COPY_COLUMNS.items():
        if blocks.get(table):
            await s.tx.copy_text(table, columns, blocks[table])
    for i in later:
        await _new_version(s, *chunk.keys[i], chunk.content(i), new_version)
    return len(chunk.keys)


_Item = TypeVar("_Item", Prepared, CopyReady)

#: Stores an id seen again (already stored, or earlier in the batch) as its next version:
#: (type, id, the resource) → (stored version, created). The default is `Session.update`; the
#: access gate passes its own, so such updates get a write's checks and audit.
NewVersion = Callable[[str, str, dict[str, Any]], Awaitable[tuple[Stored, bool]]]


async def _split(s: Session, items: Sequence[_Item], *, assume_new: bool = False
                 ) -> tuple[list[_Item], list[_Item]]:
    """`_split_keys` for items."""
    fresh, again = await _split_keys(s, [(i.res_type, i.res_id) for i in items],
                                     assume_new=assume_new)
    return [items[i] for i in fresh], [items[i] for i in again]


async def _split_keys(s: Session, keys: Sequence[tuple[str, str]], *, assume_new: bool = False
                      ) -> tuple[list[int], list[int]]:
    """(new, again), as indexes into `keys`: the first occurrence of an id not yet stored is
    copied in; an id seen again — stored already, or earlier in this batch (NDJSON exports
    repeat shared resources) — becomes a new version."""
    existing = set() if assume_new else await _existing(s, keys)
    seen: set[tuple[str, str]] = set()
    fresh: list[int] = []
    again: list[int] = []
    for i, key in enumerate(keys):
        if key in existing or key in seen:
            again.append(i)
        else:
            seen.add(key)
            fresh.append(i)
    return fresh, again


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
