"""The resource repository: versioned FHIR resources with their search indexes, in one transaction.

A `Session` is one database transaction. Everything an HTTP request or a transaction Bundle
writes goes through one session, so it commits whole or not at all
(https://hl7.org/fhir/R4/http.html#transaction).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from akson.fhir import dates, indexing, jsonio
from akson.fhir.outcome import FhirError
from akson.fhir.search import SearchQuery
from akson.fhir.searchparams import SearchParamRegistry
from akson.store import pg_write
from akson.store.database import Database, Tx
from akson.store.search_sql import Where, compile_where


@dataclass(frozen=True)
class Stored:
    """One version of a resource as stored; `content` is None for a deletion."""

    res_type: str
    res_id: str
    version: int
    last_updated: int
    deleted: bool
    content: bytes | None
    method: str = "PUT"

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'


@dataclass(frozen=True)
class Page:
    """A page of search or history results with keyset cursors for the neighbouring pages."""

    items: list[Stored]
    next_cursor: int | None
    prev_cursor: int | None
    total: int | None


_INSERT = {
    "sp_token": "INSERT INTO sp_token (res_pk, res_type, param, system, code) VALUES (%s,%s,%s,%s,%s)",
    "sp_string": "INSERT INTO sp_string (res_pk, res_type, param, value_norm, value_exact) "
    "VALUES (%s,%s,%s,%s,%s)",
    "sp_date": "INSERT INTO sp_date (res_pk, res_type, param, low, high) VALUES (%s,%s,%s,%s,%s)",
    "sp_reference": "INSERT INTO sp_reference (res_pk, res_type, param, target_type, target_id, url)"
    " VALUES (%s,%s,%s,%s,%s,%s)",
    "sp_quantity": "INSERT INTO sp_quantity (res_pk, res_type, param, value, system, code) "
    "VALUES (%s,%s,%s,%s,%s,%s)",
    "sp_number": "INSERT INTO sp_number (res_pk, res_type, param, value) VALUES (%s,%s,%s,%s)",
    "sp_uri": "INSERT INTO sp_uri (res_pk, res_type, param, uri) VALUES (%s,%s,%s,%s)",
}
_ROWS_FIELD = {
    "sp_token": "tokens", "sp_string": "strings", "sp_date": "dates",
    "sp_reference": "references", "sp_quantity": "quantities", "sp_number": "numbers",
    "sp_uri": "uris",
}
_COLS = "res_type, res_id, version, last_updated, deleted, content"


class ResourceStore:
    """Opens sessions on a Database; holds the search-parameter registry used for indexing."""

    def __init__(self, db: Database, registry: SearchParamRegistry) -> None:
        self.db = db
        self.registry = registry

    @asynccontextmanager
    async def session(self, *, write: bool, bulk: bool = False) -> AsyncIterator[Session]:
        """One transaction; `bulk=True` for sessions that call `akson.store.bulk`."""
        async with self.db.transaction(write=write, bulk=bulk) as tx:
            yield Session(tx, self.registry)


class Session:
    """Reads and writes inside one database transaction."""

    def __init__(self, tx: Tx, registry: SearchParamRegistry) -> None:
        self.tx = tx
        self.registry = registry
        self.dialect = tx.dialect

    # ------------------------------------------------------------------ reads

    async def read(self, res_type: str, res_id: str, *, for_update: bool = False) -> Stored | None:
        """The current version (possibly a deletion marker), or None if it never existed."""
        lock = " FOR UPDATE" if for_update and self.dialect == "postgresql" else ""
        row = await self.tx.fetchone(
            f"SELECT pk, {_COLS} FROM resource WHERE res_type = %s AND res_id = %s{lock}",
            (res_type, res_id),
        )
        return _stored(row[1:]) if row else None

    async def vread(self, res_type: str, res_id: str, version: int) -> Stored | None:
        row = await self.tx.fetchone(
            f"SELECT {_COLS}, method FROM resource_version "
            "WHERE res_type = %s AND res_id = %s AND version = %s",
            (res_type, res_id, version),
        )
        return _stored(row) if row else None

    async def exists(self, res_type: str, res_id: str) -> bool:
        row = await self.tx.fetchone(
            "SELECT 1 FROM resource WHERE res_type = %s AND res_id = %s AND NOT deleted",
            (res_type, res_id),
        )
        return row is not None

    # ----------------------------------------------------------------- writes

    async def create(self, res_type: str, resource: dict, *, res_id: str | None = None) -> Stored:
        """Store a new resource with a server id (or `res_id`), version 1."""
        res_id = res_id or str(uuid.uuid4())
        return await self._write(res_type, res_id, resource, None, "POST")

    async def update(
        self, res_type: str, res_id: str, resource: dict, *, if_match: int | None = None
    ) -> tuple[Stored, bool]:
        """Store a new version; create it (update-as-create) if it never existed.

        Returns the stored version and whether it was created. `if_match` makes the update
        conditional on the current version (412 otherwise, http.html#concurrency).
        """
        current = await self.read(res_type, res_id, for_update=True)
        if if_match is not None and (current is None or current.version != if_match):
            found = "does not exist" if current is None else f"is at version {current.version}"
            raise FhirError(412, f"{res_type}/{res_id} {found}, not version {if_match}",
                            "conflict")
        stored = await self._write(res_type, res_id, resource, current, "PUT")
        return stored, current is None or current.deleted

    async def delete(self, res_type: str, res_id: str) -> Stored | None:
        """Mark deleted (history kept); None when there was nothing live to delete."""
        current = await self.read(res_type, res_id, for_update=True)
        if current is None or current.deleted:
            return None
        now = dates.now_us()
        version = current.version + 1
        row = await self.tx.fetchone(
            "UPDATE resource SET version = %s, last_updated = %s, deleted = %s, content = NULL "
            "WHERE res_type = %s AND res_id = %s RETURNING pk",
            (version, now, True, res_type, res_id),
        )
        assert row is not None
        await self._clear_index(row[0])
        await self._insert_version(row[0], res_type, res_id, version, now, True, "DELETE", None)
        return Stored(res_type, res_id, version, now, True, None, "DELETE")

    async def _write(
        self, res_type: str, res_id: str, resource: dict, current: Stored | None, method: str
    ) -> Stored:
        version = current.version + 1 if current else 1
        now = dates.now_us()
        doc = _with_meta(resource, res_id, version, now)
        rows = indexing.extract(doc, self.registry)
        patient_id = indexing.patient_compartment(doc, rows)
        content = jsonio.dumps(doc)
        if self.dialect == "postgresql":
            sql = pg_write.UPDATE_SQL if current is not None else pg_write.INSERT_SQL
            await self.tx.execute(sql, pg_write.params(res_type, res_id, version, now,
                                                       patient_id, content, method, rows))
            return Stored(res_type, res_id, version, now, False, content, method)
        if current is None:
            row = await self.tx.fetchone(
                "INSERT INTO resource (res_type, res_id, version, last_updated, deleted, "
                "patient_id, content) VALUES (%s,%s,%s,%s,%s,%s,%s) RETURNING pk",
                (res_type, res_id, version, now, False, patient_id, content),
            )
        else:
            row = await self.tx.fetchone(
                "UPDATE resource SET version = %s, last_updated = %s, deleted = %s, "
                "patient_id = %s, content = %s WHERE res_type = %s AND res_id = %s RETURNING pk",
                (version, now, False, patient_id, content, res_type, res_id),
            )
        assert row is not None
        pk = row[0]
        if current is not None:
            await self._clear_index(pk)
        await self._insert_index(pk, res_type, rows)
        await self._insert_version(pk, res_type, res_id, version, now, False, method, content)
        return Stored(res_type, res_id, version, now, False, content, method)

    async def _insert_version(
        self, pk: int, res_type: str, res_id: str, version: int, now: int, deleted: bool,
        method: str, content: bytes | None,
    ) -> None:
        await self.tx.execute(
            "INSERT INTO resource_version (res_pk, res_type, res_id, version, last_updated, "
            "deleted, method, content) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)",
            (pk, res_type, res_id, version, now, deleted, method, content),
        )

    async def _insert_index(self, pk: int, res_type: str, rows: indexing.IndexRows) -> None:
        for table, sql in _INSERT.items():
            values: Sequence[tuple[Any, ...]] = getattr(rows, _ROWS_FIELD[table])
            if values:
                await self.tx.executemany(sql, [(pk, res_type, *v) for v in values])

    async def _clear_index(self, pk: int) -> None:
        for table in _INSERT:
            await self.tx.execute(f"DELETE FROM {table} WHERE res_pk = %s", (pk,))

    async def analyze(self) -> None:
        """Refresh the planner's statistics, e.g. after a large first load into empty tables.

        Without them PostgreSQL plans index lookups as if the tables were empty and imports
        slow down several-fold.
        """
        await self.tx.execute("ANALYZE")

    async def lock_condition(self, res_type: str, condition: str) -> None:
        """Serialise conditional writes on the same condition (atomic If-None-Exist).

        PostgreSQL: a transaction-scoped advisory lock on a 64-bit hash of type + condition, so
        two requests with the same condition cannot both see "no match" and both insert.
        SQLite: writers are already serialised (BEGIN IMMEDIATE), nothing more is needed.
        """
        if self.dialect != "postgresql":
            return
        digest = hashlib.blake2b(_condition_key(res_type, condition).encode(),
                                 digest_size=8).digest()
        key = int.from_bytes(digest, "big", signed=True)
        await self.tx.execute("SELECT pg_advisory_xact_lock(%s)", (key,))

    # ----------------------------------------------------------------- search

    async def search(self, query: SearchQuery, *, base_url: str = "",
                     extra: Where | None = None) -> Page:
        """Run a search with keyset paging over `resource.pk` (stable while others write)."""
        where = compile_where(query, base_url=base_url)
        if extra:
            where.sql += extra.sql
            where.params += extra.params
        base_sql = "FROM resource r WHERE NOT r.deleted"
        params: list[Any] = []
        if query.resource_type:
            base_sql += " AND r.res_type = %s"
            params.append(query.resource_type)
        base_sql += " AND " + where.render()
        params += where.params
        total = await self._total(query, base_sql, params)
        if query.count == 0:
            return Page([], None, None, total)
        cursor = query.cursor
        backwards = cursor is not None and cursor < 0
        page_sql = base_sql
        page_params = list(params)
        if cursor is not None:
            page_sql += " AND r.pk < %s" if backwards else " AND r.pk > %s"
            page_params.append(abs(cursor))
        order = "DESC" if backwards else "ASC"
        rows = await self.tx.fetchall(
            f"SELECT r.pk, r.{_COLS.replace(', ', ', r.')} {page_sql} ORDER BY r.pk {order} "
            "LIMIT %s",
            (*page_params, query.count + 1),
        )
        more = len(rows) > query.count
        rows = rows[: query.count]
        if backwards:
            rows.reverse()
        items = [_stored(r[1:]) for r in rows]
        first_pk = rows[0][0] if rows else None
        last_pk = rows[-1][0] if rows else None
        has_next = more if not backwards else True
        has_prev = (cursor is not None and not backwards) or (backwards and more)
        next_cursor = last_pk if has_next and last_pk is not None else None
        prev_cursor = -first_pk if has_prev and first_pk is not None else None
        if total is None and cursor is None and not more:
            total = len(items)  # the whole result fits in the first page: the count is free
        return Page(items, next_cursor, prev_cursor, total)

    async def _total(self, query: SearchQuery, base_sql: str, params: list[Any]) -> int | None:
        if query.total != "accurate" and not (query.total == "auto" and query.count == 0):
            return None
        row = await self.tx.fetchone(f"SELECT COUNT(*) {base_sql}", params)
        return int(row[0]) if row else 0

    # ---------------------------------------------------------------- history

    async def history(
        self, res_type: str | None, res_id: str | None, *, since: int | None, count: int,
        cursor: int | None,
    ) -> Page:
        """Versions newest first (http.html#history), paged by the version sequence number."""
        sql = f"SELECT seq, {_COLS}, method FROM resource_version WHERE 1=1"
        params: list[Any] = []
        if res_type:
            sql += " AND res_type = %s"
            params.append(res_type)
        if res_id:
            sql += " AND res_id = %s"
            params.append(res_id)
        if since is not None:
            sql += " AND last_updated >= %s"
            params.append(since)
        if cursor is not None:
            sql += " AND seq < %s"
            params.append(cursor)
        rows = await self.tx.fetchall(sql + " ORDER BY seq DESC LIMIT %s", (*params, count + 1))
        more = len(rows) > count
        rows = rows[:count]
        total = None
        if cursor is None and not more:
            total = len(rows)
        next_cursor = rows[-1][0] if more and rows else None
        return Page([_stored(r[1:]) for r in rows], next_cursor, None, total)


#: Parameters that shape a result page, not the match: they do not change a condition.
_NOT_CONDITION = frozenset({"_count", "_total", "_format", "_pretty", "_cursor"})


def _condition_key(res_type: str, condition: str) -> str:
    """One spelling per condition: `Patient?identifier=a%7Cb` and `identifier=a|b&_count=1` must
    take the same lock, or two requests writing the condition differently could both insert."""
    query = condition.split("?", 1)[-1]
    pairs = sorted((k, v) for k, v in parse_qsl(query, keep_blank_values=True)
                   if k not in _NOT_CONDITION)
    return f"{res_type}?{urlencode(pairs)}"


def _stored(row: Sequence[Any]) -> Stored:
    content = row[5]
    if content is not None and not isinstance(content, bytes):
        content = bytes(content)
    method = row[6] if len(row) > 6 else "PUT"
    return Stored(row[0], row[1], row[2], row[3], bool(row[4]), content, method)


def _with_meta(resource: dict, res_id: str, version: int, now: int) -> dict:
    """The resource as it will be stored: `id` and `meta` first, the client's elements after."""
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = dates.to_instant(now)
    doc: dict = {"resourceType": resource["resourceType"], "id": res_id, "meta": meta}
    for key, value in resource.items():
        if key not in doc:
            doc[key] = value
    return doc
