"""The resource repository: versioned FHIR resources with their search indexes, in one transaction.

A `Session` is one database transaction. Everything an HTTP request or a transaction Bundle
writes goes through one session, so it commits whole or not at all
(https://hl7.org/fhir/R4/http.html#transaction).
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode

from akson.fhir import dates, indexing, jsonio, pairs, valuesets
from akson.fhir.outcome import FhirError
from akson.fhir.search import Clause, ExtraRows, SearchQuery, index_rows
from akson.fhir.searchparams import SearchParamRegistry
from akson.store import chain_rows, pg_write, token_counts
from akson.store.database import Database, HeldWrites, Tx
from akson.store.schema import supersede_sql
from akson.store.search_sql import (
    ChainLead,
    ChainRowsLead,
    Driver,
    Scope,
    Where,
    chain_lead,
    chain_rows_lead,
    compile_where,
    date_walk,
    driver,
    hull_of,
    leading_rows,
    narrowing,
    needs_index_row,
    pair_date_rows,
    pair_date_walk,
    reads_pk_only,
    sort_expressions,
    valueset_urls,
    with_pk_from,
)


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
    #: With `_sort`: the sort-key values of the last (first) row, for the next (previous) page.
    next_key: tuple[Any, ...] | None = None
    prev_key: tuple[Any, ...] | None = None
    #: With `_explain`: the database's plan of the page statement.
    plan: str | None = None
    #: The record (Patient id) of each item that belongs to one, by (type, id), when the page
    #: statement read it (searches do, for their audit record); None when not read.
    patients: dict[tuple[str, str], str] | None = None


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
    # Search-only index rows (migration 0003, akson.fhir.search.extra_index_rows).
    "sp_identifier_type": "INSERT INTO sp_identifier_type (res_pk, res_type, param, "
    "type_system, type_code, value) VALUES (%s,%s,%s,%s,%s,%s)",
    "sp_token_text": "INSERT INTO sp_token_text (res_pk, res_type, param, value_norm) "
    "VALUES (%s,%s,%s,%s)",
    "sp_composite": "INSERT INTO sp_composite (res_pk, res_type, param, system, code, v_system, "
    "v_code, v_value, v_low, v_high, v_text) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
}
_ROWS_FIELD = {
    "sp_token": "tokens", "sp_string": "strings", "sp_date": "dates",
    "sp_reference": "references", "sp_quantity": "quantities", "sp_number": "numbers",
    "sp_uri": "uris", "sp_identifier_type": "identifier_types", "sp_token_text": "texts",
    "sp_composite": "composites",
}
_COLS = "res_type, res_id, version, last_updated, deleted, content"
#: A search page's leading columns on `resource r`: its pk (the keyset), then `_COLS`.
_PAGE_COLS = "r.pk, r." + _COLS.replace(", ", ", r.")



def _few_rows(drv: Driver) -> bool:
    """Does the driver clause match a few rows at most (an `identifier`)? Then its plain page
    (`Session._driven_page_sql`) is the answer, not a bounded walk (ADR 0010, amended)."""
    return drv.clause.name == "identifier"


def _counts(query: SearchQuery) -> bool:
    """Does the search's `_total` call for an exact count (search.html#total)?"""
    return query.total == "accurate" or (query.total == "auto" and query.count == 0)


def _reads_pk_only(where: Where) -> bool:
    """Do these predicates read no column of the searched row `r` but `r.pk`? Then index rows
    can stand in for `resource` rows: they exist only for live current versions (ADR 0011)."""
    return _pk_only_sql(where.render())


@functools.lru_cache(maxsize=1024)
def _pk_only_sql(sql: str) -> bool:
    # A search asks up to four times, and its SQL (values are parameters) repeats by shape.
    return reads_pk_only(sql, "r")


#: The same columns read from `resource_version v`. The current version's row holds no content
#: (it is stored once, in `resource`); every superseded live version's row holds its own, and a
#: deleted version has none (ADR 0009).
_VERSION_COLS = (
    "v.res_type, v.res_id, v.version, v.last_updated, v.deleted, "
    "CASE WHEN v.deleted THEN NULL ELSE COALESCE(v.content, (SELECT r.content FROM resource r "
    "WHERE r.pk = v.res_pk AND r.version = v.version)) END"
)


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
        #: The municipality (orgnr) and unit recorded on every version this session writes: the
        #: data controller of that entry (ARCHITECTURE principle 2); set by the access gate.
        self.writer: tuple[str | None, str | None] = (None, None)
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

    async def read_checked(self, res_type: str, res_id: str, check: Where, *,
                           for_update: bool = False) -> tuple[Stored, bool, str | None] | None:
        """`read` in the same statement as a check of the row (predicates on alias `r`) and its
        record: (current version, whether `check` holds, Patient id), or None if it never
        existed. One round trip for what a guarded read needs (akson.access.gate)."""
        lock = " FOR UPDATE" if for_update and self.dialect == "postgresql" else ""
        row = await self.tx.fetchone(
            f"SELECT {_COLS}, r.patient_id, CASE WHEN {check.render()} THEN 1 ELSE 0 END "
            f"FROM resource r WHERE r.res_type = %s AND r.res_id = %s{lock}",
            (*check.params, res_type, res_id),
        )
        if row is None:
            return None
        return _stored(row[:6]), bool(row[7]), None if row[6] is None else str(row[6])

    async def read_many(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Stored]:
        """The current versions of these `(type, id)` keys that exist, in one statement per
        type."""
        by_type: dict[str, list[str]] = {}
        for res_type, res_id in keys:
            by_type.setdefault(res_type, []).append(res_id)
        found: dict[tuple[str, str], Stored] = {}
        for res_type, ids in by_type.items():
            marks = ", ".join(["%s"] * len(ids))
            rows = await self.tx.fetchall(
                f"SELECT {_COLS} FROM resource WHERE res_type = %s AND res_id IN ({marks})",
                (res_type, *ids))
            for row in rows:
                stored = _stored(row)
                found[(stored.res_type, stored.res_id)] = stored
        return found

    async def vread(self, res_type: str, res_id: str, version: int) -> Stored | None:
        row = await self.tx.fetchone(
            f"SELECT {_VERSION_COLS}, method FROM resource_version v "
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
        await self._keep_superseded(res_type, res_id, current.version)
        row = await self.tx.fetchone(
            "UPDATE resource SET version = %s, last_updated = %s, deleted = %s, content = NULL, "
            "org = %s, unit = %s WHERE res_type = %s AND res_id = %s RETURNING pk",
            (version, now, True, *self.writer, res_type, res_id),
        )
        assert row is not None
        await self._clear_index(row[0])
        await self._insert_version(row[0], res_type, res_id, version, now, True, "DELETE")
        return Stored(res_type, res_id, version, now, True, None, "DELETE")

    async def _write(
        self, res_type: str, res_id: str, resource: dict, current: Stored | None, method: str
    ) -> Stored:
        version = current.version + 1 if current else 1
        now = dates.now_us()
        doc = _with_meta(resource, res_id, version, now)
        rows, extra = index_rows(doc, self.registry)
        patient_id = indexing.patient_compartment(doc, rows)
        content = jsonio.dumps(doc)
        if self.dialect == "postgresql":
            # Held: sent with the next statement, or as one with the audit record (ADR 0017).
            await cast(HeldWrites, self.tx).hold(*pg_write.write(
                current is not None, res_type, res_id, version, now, patient_id, content,
                method, rows, extra, writer=self.writer))
            return Stored(res_type, res_id, version, now, False, content, method)
        if current is None:
            row = await self.tx.fetchone(
                "INSERT INTO resource (res_type, res_id, version, last_updated, deleted, "
                "patient_id, content, org, unit) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING pk",
                (res_type, res_id, version, now, False, patient_id, content, *self.writer),
            )
        else:
            await self._keep_superseded(res_type, res_id, current.version)
            row = await self.tx.fetchone(
                "UPDATE resource SET version = %s, last_updated = %s, deleted = %s, "
                "patient_id = %s, content = %s, org = %s, unit = %s "
                "WHERE res_type = %s AND res_id = %s RETURNING pk",
                (version, now, False, patient_id, content, *self.writer, res_type, res_id),
            )
        assert row is not None
        pk = row[0]
        if current is not None:
            await self._clear_index(pk)
        await self._insert_index(pk, res_type, rows, extra)
        await self._insert_version(pk, res_type, res_id, version, now, False, method)
        return Stored(res_type, res_id, version, now, False, content, method)

    async def _insert_version(
        self, pk: int, res_type: str, res_id: str, version: int, now: int, deleted: bool,
        method: str,
    ) -> None:
        """The version row of the new current version: its content lives in `resource` only
        until a later version supersedes it (ADR 0009)."""
        await self.tx.execute(
            "INSERT INTO resource_version (res_pk, res_type, res_id, version, last_updated, "
            "deleted, method, content) VALUES (%s,%s,%s,%s,%s,%s,%s,NULL)",
            (pk, res_type, res_id, version, now, deleted, method),
        )

    async def _keep_superseded(self, res_type: str, res_id: str, version: int) -> None:
        """Copy the current content into its version row before a new version replaces it."""
        await self.tx.execute(supersede_sql(), (res_type, res_id, version))

    async def _insert_index(self, pk: int, res_type: str, rows: indexing.IndexRows,
                            extra: ExtraRows | None = None) -> None:
        extra = extra or ExtraRows()
        for table, sql in _INSERT.items():
            field = _ROWS_FIELD[table]
            values: Sequence[tuple[Any, ...]] = getattr(rows, field, None) or \
                getattr(extra, field, None) or ()
            if table == "sp_token":  # reference identifiers are token rows (`ref:identifier`)
                values = [*values, *extra.ref_identifiers]
            if values:
                await self.tx.executemany(sql, [(pk, res_type, *v) for v in values])

    async def _clear_index(self, pk: int) -> None:
        for table in _INSERT:
            await self.tx.execute(f"DELETE FROM {table} WHERE res_pk = %s", (pk,))

    async def analyze(self, table: str | None = None) -> None:
        """Refresh the planner's statistics (of one of this schema's tables, or all), e.g. after
        a large first load into empty tables.

        Without them PostgreSQL plans index lookups as if the tables were empty and imports
        slow down several-fold.
        """
        if table is not None and not table.isidentifier():
            raise ValueError(f"not a table name: {table!r}")
        await self.tx.execute(f"ANALYZE {table}" if table else "ANALYZE")

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
                     extra: Where | None = None, scope: Scope | None = None) -> Page:
        """Run a search as one statement, keyset-paged (stable while others write).

        Without `_sort` pages follow `resource.pk`; with it they follow the sort keys then `pk`,
        and the cursor carries the boundary row's key values (search.html#sort). `extra` adds
        predicates on `r`; `scope(alias, type)` adds them for every resource a chain or `_has`
        passes through, so a policy filters inside the query (also its totals).
        """
        valuesets = await self._valuesets(query, base_url)

        def with_extra(where: Where) -> Where:
            if extra:
                where.sql += extra.sql
                where.params += extra.params
            return where

        ready = self._ready_pairs()

        def compiled(q: SearchQuery, probe_has: bool = False) -> Where:
            return with_extra(compile_where(q, base_url=base_url, valuesets=valuesets,
                                            scope=scope, probe_has=probe_has, pairs=ready))

        where = compiled(query)
        base_sql = "FROM resource r WHERE NOT r.deleted"
        params: list[Any] = []
        if query.resource_type:
            base_sql += " AND r.res_type = %s"
            params.append(query.resource_type)
        base_sql += " AND " + where.render()
        params += where.params
        cursor = query.cursor
        backwards = cursor is not None and cursor < 0
        # The driver clause leads unsorted pages; with or without a sort it can be counted.
        drv = driver(query) if query.resource_type else None
        maintained: token_counts.Key | None = None  # `counted` reads this key's count
        rest = Where()
        if drv is not None:
            others = [c for c in query.clauses if c is not drv.clause]
            rest = compiled(replace(query, clauses=others)) if others else with_extra(Where())
        counted: tuple[str, list[Any]] | None = None
        if drv is not None and _counts(query):
            if (self.dialect == "postgresql" and len(query.clauses) == 1
                    and (extra is None or len(extra.excluded) == len(extra.sql))):
                # The code alone, at most label rules besides: a maintained count (ADR 0019).
                assert query.resource_type
                maintained = (query.resource_type, drv.clause.name, drv.system, drv.code)
                counted = token_counts.count_sql(maintained, extra or Where())
            else:
                counted = self._driven_count_sql(query, drv, rest)
        if query.count == 0 and not query.explain:  # a count alone: no page to plan
            return Page([], None, None,
                        await self._total(query, base_sql, params, counted, maintained))
        few: tuple[str, list[Any], bool] | None = None  # few leading rows (_few_page_sql)
        few_bound = FEW_IN_RANGE  # from this count of leading rows on, `few` is not the answer
        page: Callable[[], tuple[str, list[Any]]]
        # A code in a date range by its pairs, or a date range alone, walked by bucket (the
        # last item: the rows are the whole answer).
        bucketed: tuple[str, list[Any], bool] | None = None
        if drv is not None and not query.sort:
            led = drv
            page = lambda: self._driven_page_sql(query, led, rest, backwards)  # noqa: E731
            walk = self._token_walk_sql(query, drv, rest, backwards)
            bucketed = self._paired_page_sql(query, drv, ready, rest, backwards, compiled)
        else:
            index_page = self._index_page_sql(query, where, backwards)
            found = index_page or self._page_sql(query, base_sql, params, backwards)
            page = lambda: found  # noqa: E731
            bucketed = self._date_walk_page_sql(query, backwards, compiled) if index_page else None
            if index_page and bucketed is None:
                few = self._few_page_sql(query, backwards, compiled)
                if few is None:
                    few = self._chain_rows_page_sql(query, backwards, compiled,
                                                    chain_rows_lead(query, scope=scope))
                    few_bound = FEW_IN_RANGE if few is None else chain_rows.MAX_VALUES
                if few is None:
                    few = self._chain_page_sql(query, backwards, compiled, chain_lead(
                        query, base_url=base_url, valuesets=valuesets, scope=scope, pairs=ready))
            walk = few[:2] if few else self._newest_walk_sql(query, where, backwards)
            if walk is None and self._has_leads(query):
                walk = self._has_walk_sql(query, compiled(query, probe_has=True), backwards)
        if query.explain:
            plan_sql, plan_params = (bucketed[:2] if bucketed else None) or walk or page()
            return Page([], None, None, None, plan=await self._explain(plan_sql, plan_params))
        total = await self._total(query, base_sql, params, counted, maintained)
        token_walk = walk is not None and drv is not None and not query.sort
        # A token walk of its code alone may be prepared: whatever the code's frequency, its
        # plan is the same (at most WALK index rows in pk order, each probing its resource),
        # and planning it cost four times its run (214 µs against 53 µs, on an identifier).
        # So may a page of few leading rows with no other clause: its fences fix the plan.
        # Other clauses (a date range) are planned for their values, as every search is.
        alone = (token_walk and len(query.clauses) == 1) or (few is not None and few[2])
        rows: list[Any] = []
        whole = False  # did a walk see every index row it could use?
        if bucketed is not None and bucketed[2]:  # a date range walked by bucket
            rows, whole = await self.tx.fetchall(*bucketed[:2], prepare=False), True
        elif bucketed is not None:  # or read in range, the answer if they were few
            rows, whole = self._walked(
                await self.tx.fetchall(*bucketed[:2], prepare=False), FEW_IN_RANGE)
        if not whole and walk is not None:
            rows = await self.tx.fetchall(*walk, prepare=None if alone else False)
            if token_walk and drv is not None:
                rows, whole = self._walked(rows, WALK)
                if len(rows) <= query.count and not whole and _reads_pk_only(rest):
                    # Rare matches among a common code's rows (a code in one year): a longer
                    # walk probes index rows only, so it costs what the code's rows cost,
                    # where the planner read every date row of the type (31 against 13 ms).
                    long_walk = self._token_walk_sql(query, drv, rest, backwards, LONG_WALK)
                    assert long_walk is not None
                    rows, whole = self._walked(
                        await self.tx.fetchall(*long_walk, prepare=False), LONG_WALK)
            elif few is not None:  # the whole answer, unless the leading rows were not few
                rows, whole = self._walked(rows, few_bound)
                if not whole:
                    rows = []
        if len(rows) <= query.count and not whole:  # no walk, or it did not fill the page:
            # the planner, for the values at hand; an identifier alone is prepared (one plan
            # fits every value: its few rows, each probing its resource).
            lone = drv is not None and _few_rows(drv) and len(query.clauses) == 1
            rows = await self.tx.fetchall(*page(), prepare=None if lone else False)
        more = len(rows) > query.count
        rows = rows[: query.count]
        if backwards:
            rows.reverse()
        items = [_stored(r[1:7]) for r in rows]
        nkeys = len(query.sort)
        has_next = more if not backwards else True
        has_prev = (cursor is not None and not backwards) or (backwards and more)
        next_cursor = rows[-1][0] if has_next and rows else None
        prev_cursor = -rows[0][0] if has_prev and rows else None
        next_key = tuple(rows[-1][7:7 + nkeys]) if nkeys and next_cursor is not None else None
        prev_key = tuple(rows[0][7:7 + nkeys]) if nkeys and prev_cursor is not None else None
        patients = {(r[1], r[2]): r[7 + nkeys] for r in rows if r[7 + nkeys] is not None}
        if total is None and query.total != "none" and cursor is None and not more:
            total = len(items)  # the whole result fits in the first page: the count is free
        return Page(items, next_cursor, prev_cursor, total, next_key, prev_key,
                    patients=patients)

    def _driven_page_sql(self, query: SearchQuery, drv: Driver, rest: Where,
                         backwards: bool) -> tuple[str, list[Any]]:
        """A page led by the driver clause's index rows in pk order (search_sql.driver): the
        database reads matches until the page is full instead of sorting all of them. When
        the other predicates read only `r.pk` (`_reads_pk_only`), the page's pks are found
        from index rows alone and only they read `resource` (ADR 0011): a code with a sparse
        date range no longer reads every match's row on the way (0.7 s at a million)."""
        order = "DESC" if backwards else "ASC"
        lead, params = _code_rows(query, drv, backwards)
        if _reads_pk_only(rest):
            sql = (f"SELECT {_PAGE_COLS}, r.patient_id FROM (SELECT r.pk FROM (SELECT d.res_pk "
                   f"AS pk FROM sp_token d WHERE {lead}) r WHERE {rest.render()} "
                   f"ORDER BY r.pk {order} LIMIT %s) m JOIN resource r ON r.pk = m.pk "
                   f"ORDER BY r.pk {order}")
            return sql, [*params, *rest.params, query.count + 1]
        sql = (f"SELECT {_PAGE_COLS}, r.patient_id FROM sp_token d JOIN resource r "
               f"ON r.pk = d.res_pk WHERE {lead} AND NOT r.deleted AND r.res_type = %s AND "
               f"{rest.render()} ORDER BY d.res_pk {order} LIMIT %s")
        return sql, [*params, query.resource_type, *rest.params, query.count + 1]

    @staticmethod
    def _walked(rows: list[Any], bound: int) -> tuple[list[Any], bool]:
        """A walk's rows without their count column, and whether the count stayed below
        `bound`: the walk saw every index row it could use, so its rows are the answer."""
        return [row[:-1] for row in rows if row[0] is not None], rows[0][-1] < bound

    def _token_walk_sql(self, query: SearchQuery, drv: Driver, rest: Where,
                        backwards: bool, bound: int = 0) -> tuple[str, list[Any]] | None:
        """`_driven_page_sql` as a bounded walk, on PostgreSQL, when no other clause narrows
        the search: the first WALK index rows after the cursor, each probing its resource (a
        fenced LATERAL subquery). Left to itself the planner merge-joins with `resource` in pk
        order and reads every resource up to the page's last match — 44 ms instead of 2 ms for
        a page of a common code at a million resources. A walk that does not fill the page is
        answered by `_driven_page_sql` instead, unless it saw every index row of its code (a
        rare code: its last column counts them, at most WALK). Predicates that read only
        `r.pk` are probed on index rows, and only the page reads `resource`. An `identifier`
        has a few rows at most: `_driven_page_sql` alone is cheaper (bind and run 13 µs less
        in PostgreSQL)."""
        if (self.dialect != "postgresql" or narrowing(query.clauses, drv.clause)
                or _few_rows(drv)):
            return None
        bound = bound or WALK
        order = "DESC" if backwards else "ASC"
        lead, params = _code_rows(query, drv, backwards)
        walked = f"(SELECT d.res_pk FROM sp_token d WHERE {lead} ORDER BY d.res_pk {order} LIMIT %s) d"
        if _reads_pk_only(rest):
            page = (f"SELECT {_PAGE_COLS}, r.patient_id FROM (SELECT d.res_pk FROM {walked} "
                    f"CROSS JOIN LATERAL (SELECT 1 FROM (SELECT d.res_pk AS pk) r WHERE "
                    f"{rest.render()} OFFSET 0) x ORDER BY d.res_pk {order} LIMIT %s) m "
                    f"JOIN resource r ON r.pk = m.res_pk")
            page_params = [*params, bound, *rest.params, query.count + 1]
        else:
            page = (f"SELECT {_PAGE_COLS}, r.patient_id FROM {walked} {_probe(rest.render())} "
                    f"ORDER BY d.res_pk {order} LIMIT %s")
            page_params = [*params, bound, query.resource_type, *rest.params, query.count + 1]
        # Its last column counts the index rows it had to walk (up to WALK), so one statement
        # also tells whether a short page is the whole answer (a rare code)
        # and no second statement is needed; without matches it is one row of NULLs.
        sql = (f"SELECT w.*, c.walked FROM (SELECT count(*) AS walked FROM (SELECT 1 FROM "
               f"sp_token d WHERE {lead} LIMIT %s) z) c LEFT JOIN LATERAL ({page}) w ON true "
               f"ORDER BY w.pk {order}")
        return sql, [*params, bound, *page_params]

    def _newest_walk_sql(self, query: SearchQuery, where: Where, backwards: bool
                         ) -> tuple[str, list[Any]] | None:
        """`_sort=-<date>` forward on PostgreSQL, when no clause narrows the search: a bounded
        walk of `ix_sp_date_newest` after the cursor in (newest value, pk) order, each index
        row probing its resource — instead of computing the sort key of every match and
        sorting them all (1.5–2.7 s for a common code at a million resources). A resource is
        taken at its index row holding its newest value (the generic sort key, `MAX(high)`),
        once. Rows and cursors are those of `_page_sql`, which answers a walk that did not
        fill the page, other sorts, paging back and the undated matches (NULLs last)."""
        key = query.sort[0] if len(query.sort) == 1 else None
        if (self.dialect != "postgresql" or key is None or key.type != "date"
                or not key.descending or backwards or not query.resource_type
                or narrowing(query.clauses)):
            return None
        after, params = "", list[Any]([query.resource_type, key.name])
        if query.cursor is not None:
            assert query.cursor_key is not None  # `_page_sql` checked it belongs to this sort
            if query.cursor_key[0] is None:
                return None
            after = " AND (d.high < %s OR (d.high = %s AND d.res_pk > %s))"
            params += [query.cursor_key[0], query.cursor_key[0], query.cursor]
        newest = ("d.high = (SELECT MAX(m.high) FROM sp_date m WHERE m.res_pk = r.pk "
                  "AND m.param = %s)")
        sql = (f"SELECT DISTINCT ON (d.high, d.res_pk) {_PAGE_COLS}, d.high, r.patient_id "
               "FROM (SELECT d.high, d.res_pk FROM sp_date d WHERE d.res_type = %s "
               f"AND d.param = %s{after} ORDER BY d.high DESC, d.res_pk ASC LIMIT %s) d "
               f"{_probe(f'{where.render()} AND {newest}')} "
               "ORDER BY d.high DESC, d.res_pk ASC LIMIT %s")
        return sql, [*params, WALK, query.resource_type, *where.params, key.name,
                     query.count + 1]

    def _has_leads(self, query: SearchQuery) -> bool:
        """Is this an unsorted search on PostgreSQL led by one `_has` clause (nothing narrower)?"""
        has = [c for c in query.clauses if c.type == "has"]
        return (self.dialect == "postgresql" and bool(query.resource_type) and not query.sort
                and len(has) == 1 and not narrowing(query.clauses, has[0]))

    def _has_walk_sql(self, query: SearchQuery, probe: Where, backwards: bool
                      ) -> tuple[str, list[Any]]:
        """A search led by one `_has` clause (`_has_leads`) as a bounded walk of the searched
        type in pk order (`ix_resource_type_pk`), each resource probing its references into
        one hashed set of matching resources (`probe`, compiled with `probe_has`). The planner
        instead probed each resource's referrers one by one, or hashed the referrers of every
        match: 260–430 ms for a common code at a million resources. A walk of HAS_WALK
        resources that does not fill the page (rare matches) is answered by `_page_sql`."""
        order = "DESC" if backwards else "ASC"
        after, params = _after(query, backwards, "w.pk"), list[Any]([query.resource_type])
        if query.cursor is not None:
            params.append(abs(query.cursor))
        sql = (f"SELECT {_PAGE_COLS}, r.patient_id FROM (SELECT w.pk AS res_pk FROM resource w "
               f"WHERE w.res_type = %s{after} ORDER BY w.pk {order} LIMIT %s) d "
               f"{_probe(probe.render())} ORDER BY d.res_pk {order} LIMIT %s")
        return sql, [*params, HAS_WALK, query.resource_type, *probe.params, query.count + 1]

    def _index_page_sql(self, query: SearchQuery, where: Where, backwards: bool
                        ) -> tuple[str, list[Any]] | None:
        """An unsorted page whose predicates read only `r.pk`, one of them requiring a
        matching index row (`needs_index_row`, so only live resources pass): its pks are found
        from `ix_resource_type_pk` and index rows alone, and only they read `resource` (ADR
        0011). Walking `resource` itself read every type's rows on the way: an Encounter date
        range took 130–1,900 ms at a million resources. The planner reads in pk order hoping
        to stop early; `_few_page_sql` answers first when the matches are few."""
        if not (query.resource_type and not query.sort and _reads_pk_only(where)
                and needs_index_row(query.clauses)):
            return None
        order = "DESC" if backwards else "ASC"
        after, params = _after(query, backwards), [query.resource_type, *where.params]
        if query.cursor is not None:
            params.append(abs(query.cursor))
        sql = (f"SELECT {_PAGE_COLS}, r.patient_id FROM (SELECT r.pk FROM resource r WHERE "
               f"r.res_type = %s AND {where.render()}{after} ORDER BY 1 {order} LIMIT %s) m "
               f"JOIN resource r ON r.pk = m.pk ORDER BY r.pk {order}")
        return sql, [*params, query.count + 1]

    def _ready_pairs(self) -> frozenset[str]:
        """The paired rows (akson.fhir.pairs) a search may use: none of whose parameters is
        being reindexed, so every resource has its rows (migration 0021 queues that job)."""
        pending = self.registry.pending
        if not pending:
            return _ALL_PAIRS
        return frozenset(p.name for p in pairs.PAIRS if not any(
            (param := self.registry.get(p.res_type, code)) is None or param.url in pending
            for code in (p.token, p.other)))

    def _paired_page_sql(self, query: SearchQuery, drv: Driver, ready: frozenset[str],
                         rest: Where, backwards: bool,
                         compiled: Callable[[SearchQuery], Where]
                         ) -> tuple[str, list[Any], bool] | None:
        """A page of a code in a date range from the code's paired date rows (akson.fhir.pairs)
        on PostgreSQL, when the other predicates read only `r.pk`; the last item says whether
        its rows are the whole answer. A range of a few years is walked bucket by bucket in pk
        order (`pair_date_walk`): always the answer. A longer one reads up to FEW_IN_RANGE
        rows in range (`_few_page_sql`): the answer if they were fewer, else the token walk
        goes on. The date clauses are checked on every row found (a hull is a superset)."""
        res_type = query.resource_type
        if self.dialect != "postgresql" or not res_type or not _reads_pk_only(rest):
            return None
        pair = next((p for p in pairs.pairs_of(res_type) if p.kind == "date"
                     and p.token == drv.clause.name and p.name in ready), None)
        if pair is None:
            return None
        dated = [c for c in query.clauses
                 if c.name == pair.other and c.type == "date" and not c.modifier]
        if not dated:
            return None
        hull = hull_of(dated)
        order = "DESC" if backwards else "ASC"
        cursor = _cursor(query)
        walk = pair_date_walk(res_type, drv, pair.name, hull, _after(query, backwards, "res_pk"),
                              cursor, order)
        if walk is None:
            few = self._few_page_sql(query, backwards, compiled,
                                     ([drv.clause], *pair_date_rows(res_type, drv, pair.name, hull)))
            return None if few is None else (few[0], few[1], False)
        return _walked_page(query, walk, rest, order)

    def _date_walk_page_sql(self, query: SearchQuery, backwards: bool,
                            compiled: Callable[[SearchQuery], Where]
                            ) -> tuple[str, list[Any], bool] | None:
        """A page of a date range alone on a walked parameter (`search_sql.DATE_WALKS`,
        PostgreSQL), when the policy's predicates read only `r.pk`: its rows bucket by bucket
        in pk order, merged (`date_walk`), so the page stops at its last match however many
        the range holds (a month of Encounters: 1 ms in-process at a million resources, where
        reading and sorting its 4,000 rows took 2.8). Always the whole answer."""
        if self.dialect != "postgresql":
            return None
        order = "DESC" if backwards else "ASC"
        walk = date_walk(query, _after(query, backwards, "res_pk"), _cursor(query), order)
        if walk is None:
            return None
        group, rows, params = walk
        if any(all(c is not g for g in group) for c in query.clauses):
            return None  # another clause (a patient) is likelier to narrow: it leads
        rest = compiled(replace(query, clauses=[]))  # the policy's predicates
        if not _reads_pk_only(rest):
            return None
        return _walked_page(query, (rows, params), rest, order)

    def _few_page_sql(self, query: SearchQuery, backwards: bool,
                      compiled: Callable[[SearchQuery], Where],
                      lead: tuple[list[Clause], str, list[Any]] | None = None
                      ) -> tuple[str, list[Any], bool] | None:
        """`_index_page_sql` when the search's `leading_rows` (a date range, a name prefix)
        are few, in one statement (PostgreSQL): up to FEW_IN_RANGE of them are read from the
        index alone and counted (the last column), sorted, and only then probed by the other
        predicates, so the page stops at its last match. Fewer than FEW_IN_RANGE: the rows are
        the whole answer. Else the planner's statement runs. For a month of 1990 the planner
        read every date row of the database to find 9 (180 → 20 ms); a month of Encounters
        hashed and probed every Encounter's pk (20 → 1 ms at a million), a birth year and a
        gender probed every Patient born that year before sorting (5 → 0.6 ms). The last
        item says whether the leading clauses are the search's only ones."""
        if lead is None and self.dialect == "postgresql":
            lead = leading_rows(query)
        if lead is None:
            return None
        group, rows, rows_params = lead
        others = [c for c in query.clauses if all(c is not g for g in group)]
        rest = compiled(replace(query, clauses=others))
        order = "DESC" if backwards else "ASC"
        after = _after(query, backwards)
        cursor = _cursor(query)
        page = (f"SELECT {_PAGE_COLS}, r.patient_id FROM (SELECT r.pk FROM (SELECT DISTINCT "
                f"c.res_pk AS pk FROM c ORDER BY 1 {order} OFFSET 0) r WHERE {rest.render()}"
                f"{after} ORDER BY 1 {order} LIMIT %s) m JOIN resource r ON r.pk = m.pk")
        sql = _counted(f"WITH c AS MATERIALIZED ({rows} LIMIT %s)", "c", page, order)
        return sql, [*rows_params, FEW_IN_RANGE, *rest.params, *cursor, query.count + 1,
                     FEW_IN_RANGE], not others

    def _chain_rest(self, query: SearchQuery, lead: ChainLead | ChainRowsLead | None,
                    compiled: Callable[[SearchQuery], Where]) -> Where | None:
        """The predicates besides a leading chain, when a chain can lead (PostgreSQL) and they
        read only `r.pk`, so each candidate's pk can be probed from its index row."""
        if lead is None or self.dialect != "postgresql":
            return None
        rest = compiled(replace(query, clauses=[c for c in query.clauses if c is not lead.clause]))
        return rest if _reads_pk_only(rest) else None

    def _chain_page_sql(self, query: SearchQuery, backwards: bool,
                        compiled: Callable[[SearchQuery], Where], lead: ChainLead | None
                        ) -> tuple[str, list[Any], bool] | None:
        """`_few_page_sql` for a search led by one chain (`Observation?subject:Patient.name=
        x`), on PostgreSQL, when its targets are few (up to FEW_IN_RANGE) and the other
        predicates read only `r.pk`: each target's referrers are read from the reference
        index in pk order, at most a page of them (a fenced LATERAL), and the page is the first
        of their union. The planner instead read every referrer of every target and looked up
        each one's `resource` row: 2,400 Observations of 890 patients, 21 ms at a million."""
        rest = self._chain_rest(query, lead, compiled)
        if lead is None or rest is None:
            return None
        order = "DESC" if backwards else "ASC"
        probe = with_pk_from(rest.render(), "r", "s.res_pk")
        referrers = (f"SELECT s.res_pk FROM sp_reference s WHERE s.target_id = t.res_id AND "
                     f"{lead.key} AND {probe}{_after(query, backwards, 's.res_pk')} "
                     f"ORDER BY s.res_pk {order} LIMIT %s")
        sql = _counted(f"WITH t AS MATERIALIZED ({lead.targets} LIMIT %s)", "t",
                       _firsts_page("t", referrers, order), order)
        return sql, [*lead.target_params, FEW_IN_RANGE, *lead.key_params, *rest.params,
                     *_cursor(query), query.count + 1, query.count + 1, FEW_IN_RANGE], False

    def _chain_rows_page_sql(self, query: SearchQuery, backwards: bool,
                             compiled: Callable[[SearchQuery], Where],
                             lead: ChainRowsLead | None) -> tuple[str, list[Any], bool] | None:
        """A page of a search led by a chain kept as rows (akson.store.chain_rows, PostgreSQL)
        when the other predicates read only `r.pk`: the distinct values in the clause's range
        are found by a skip scan (one index descent each), then each value's rows are read in
        pk order, at most a page of them, and the page is the first of their union. Its cost
        follows the distinct values (one for a surname) and the page, not the targets (974
        Patients named Jacobsen at a million resources). Its last column counts the values:
        from MAX_VALUES on, the rows are not the answer."""
        rest = self._chain_rest(query, lead, compiled)
        if lead is None or rest is None:
            return None
        order = "DESC" if backwards else "ASC"
        below = " AND c.value_norm < %s" if lead.high is not None else ""
        bound = [lead.high] if lead.high is not None else []
        first = ("SELECT min(c.value_norm) FROM sp_chain c WHERE c.chain = %s AND "
                 "c.value_norm {}" + below)
        rows = (f"SELECT c.res_pk FROM sp_chain c WHERE c.chain = %s AND c.value_norm = v.value "
                f"AND {lead.target_policy} AND {with_pk_from(rest.render(), 'r', 'c.res_pk')}"
                f"{_after(query, backwards, 'c.res_pk')} ORDER BY c.res_pk {order} LIMIT %s")
        sql = _counted(f"WITH RECURSIVE v(value) AS ({first.format('>= %s')} UNION ALL SELECT "
                       f"({first.format('> v.value')}) FROM v WHERE v.value IS NOT NULL), "
                       "vs AS MATERIALIZED (SELECT value FROM v WHERE value IS NOT NULL LIMIT %s)",
                       "vs", _firsts_page("vs v", rows, order), order)
        return sql, [lead.chain, lead.low, *bound, lead.chain, *bound,
                     chain_rows.MAX_VALUES, lead.chain, *lead.target_params, *rest.params,
                     *_cursor(query), query.count + 1, query.count + 1,
                     chain_rows.MAX_VALUES], False

    def _page_sql(self, query: SearchQuery, base_sql: str, params: list[Any],
                  backwards: bool) -> tuple[str, list[Any]]:
        """The statement for one page: rows after (or before) the cursor, count + 1 of them."""
        limit = query.count + 1
        if not query.sort:  # the fast path: order and keyset on the primary key alone
            sql, out = base_sql, list(params)
            if query.cursor is not None:
                sql += _after(query, backwards)
                out.append(abs(query.cursor))
            return (f"SELECT {_PAGE_COLS}, r.patient_id {sql} "
                    f"ORDER BY r.pk {'DESC' if backwards else 'ASC'} LIMIT %s", [*out, limit])
        keys = sort_expressions(query)
        key_cols = ", ".join(f"{expr} AS k{i}" for i, (expr, _) in enumerate(keys))
        inner = f"SELECT {_PAGE_COLS}, {key_cols}, r.patient_id AS patient {base_sql}"
        out = [p for _, ps in keys for p in ps] + list(params)
        cond, cond_params = "1=1", list[Any]()
        if query.cursor is not None:
            if query.cursor_key is None or len(query.cursor_key) != len(keys):
                raise FhirError(400, "The page cursor does not belong to this sort")
            cond, cond_params = _keyset(query, backwards)
        order = []
        for i, key in enumerate(query.sort):
            # NULLs (no value) last in both directions: a flag key before the value.
            desc = key.descending != backwards
            order.append(f"CASE WHEN s.k{i} IS NULL THEN 1 ELSE 0 END "
                         f"{'DESC' if backwards else 'ASC'}")
            order.append(f"s.k{i} {'DESC' if desc else 'ASC'}")
        order.append(f"s.pk {'DESC' if backwards else 'ASC'}")
        return (f"SELECT * FROM ({inner}) s WHERE {cond} ORDER BY {', '.join(order)} LIMIT %s",
                [*out, *cond_params, limit])

    async def _explain(self, sql: str, params: list[Any]) -> str:
        """The database's plan for a page statement (operators only; see api/fhir/searching)."""
        if self.dialect == "postgresql":
            rows = await self.tx.fetchall("EXPLAIN " + sql, params)
            return "\n".join(_text(r[0]) for r in rows)
        rows = await self.tx.fetchall("EXPLAIN QUERY PLAN " + sql, params)
        return "\n".join(f"{r[0]} {r[1]} {_text(r[3])}" for r in rows)

    async def _valuesets(self, query: SearchQuery, base_url: str
                         ) -> dict[str, list[tuple[str, str | None]]]:
        """Expand the ValueSets `:in` / `:not-in` name (by canonical URL, `url|version` or
        `ValueSet/id`), with the CodeSystems and ValueSets their definitions use, loaded by
        `url` (akson.fhir.valuesets; valueset.html#compose).

        The expansions of one search together hold at most `valuesets.SEARCH_CODES` codes
        (else 400): every code becomes a statement parameter.
        """
        budget = valuesets.SEARCH_CODES

        async def by_url(res_type: str, url: str) -> list[dict]:
            rows = await self.tx.fetchall(
                "SELECT content FROM resource WHERE res_type = %s AND NOT deleted AND pk IN "
                "(SELECT res_pk FROM sp_uri WHERE res_type = %s AND param = 'url' AND uri = %s) "
                "ORDER BY pk DESC LIMIT %s", (res_type, res_type, url, valuesets.MAX_VERSIONS))
            return [jsonio.loads(bytes(r[0])) for r in rows]

        out: dict[str, list[tuple[str, str | None]]] = {}
        for url in sorted(valueset_urls(query.clauses)):
            local = url.removeprefix(base_url.rstrip("/") + "/") if base_url else url
            library = valuesets.Library()
            if local.startswith("ValueSet/") and local.count("/") == 1:
                row = await self.tx.fetchone(
                    "SELECT content FROM resource WHERE res_type = 'ValueSet' AND res_id = %s "
                    "AND NOT deleted", (local.split("/", 1)[1],))
                root = jsonio.loads(bytes(row[0])) if row else None
            else:
                canonical, _, version = url.partition("|")
                library.add("ValueSet", canonical, await by_url("ValueSet", canonical))
                root = library.resolve("ValueSet", canonical, version or None)
            if root is None:
                raise FhirError(400, f"ValueSet '{url[:200]}' is not known to this server",
                                "not-found")
            await valuesets.load(root, by_url, library)
            pairs = valuesets.expand_valueset(root, library.resolve, limit=budget,
                                              label=url[:200])
            budget -= len(pairs)
            out[url] = pairs
        return out

    def _driven_count_sql(self, query: SearchQuery, drv: Driver, rest: Where
                          ) -> tuple[str, list[Any]] | None:
        """The count of a driven search (search_sql.driver) from index rows alone, when the
        other predicates read no column of `r` but its pk: a derived table `r` of the driver's
        `res_pk` (one row per resource) stands in for `resource`. Sound because index rows
        exist only for live current versions (a delete or update removes them; ADR 0011). 52,000
        matches count in 20 ms this way, against 390 ms reading each match's row, at a million
        resources (docs/performance.md)."""
        if not _reads_pk_only(rest):
            return None
        return (
            "SELECT COUNT(*) FROM (SELECT d.res_pk AS pk FROM sp_token d "
            "WHERE d.res_type = %s AND d.param = %s AND d.code = %s AND d.system = %s) r "
            f"WHERE {rest.render()}",
            [query.resource_type, drv.clause.name, drv.code, drv.system, *rest.params])

    async def _total(self, query: SearchQuery, base_sql: str, params: list[Any],
                     counted: tuple[str, list[Any]] | None = None,
                     maintained: token_counts.Key | None = None) -> int | None:
        """search.html#total: `accurate` counts (with `counted`'s statement when given; with
        `maintained`, it is `token_counts.count_sql` of that key, and a large live count
        asks for the key to be promoted);
        `estimate` asks PostgreSQL's planner (SQLite counts up to ESTIMATE_CAP); `none` gives
        nothing; `auto` counts only for `_count=0`."""
        if query.total == "none":
            return None
        if query.total == "estimate":
            if self.dialect == "postgresql":
                row = await self.tx.fetchone(f"EXPLAIN (FORMAT JSON) SELECT 1 {base_sql}", params)
                plan = row[0] if row else None
                if isinstance(plan, bytes | str):
                    plan = jsonio.loads(plan.encode() if isinstance(plan, str) else plan)
                try:
                    return int(plan[0]["Plan"]["Plan Rows"])  # type: ignore[index]
                except (TypeError, KeyError, IndexError):
                    return None
            row = await self.tx.fetchone(
                f"SELECT COUNT(*) FROM (SELECT 1 {base_sql} LIMIT %s) c",
                [*params, ESTIMATE_CAP])
            return int(row[0]) if row else 0
        if not _counts(query):
            return None
        sql, sql_params = counted or (f"SELECT COUNT(*) {base_sql}", params)
        row = await self.tx.fetchone(sql, sql_params, prepare=False)
        if maintained is not None and row is not None:
            if row[0] is None and row[1] >= token_counts.PROMOTE_AT:
                token_counts.wanted.add(maintained)
            return int(row[1])
        return int(row[0]) if row else 0

    # ---------------------------------------------------------------- history

    async def history(
        self, res_type: str | None, res_id: str | None, *, since: int | None, count: int,
        cursor: int | None, extra: Where | None = None,
    ) -> Page:
        """Versions newest first (http.html#history), paged by the version sequence number.

        `extra` (an access policy's predicates on the current `resource` row, alias `r`) keeps
        only the versions of resources whose current row passes it."""
        sql = f"SELECT seq, {_VERSION_COLS}, method FROM resource_version v WHERE 1=1"
        params: list[Any] = []
        if extra is not None and extra.sql:
            sql += f" AND res_pk IN (SELECT r.pk FROM resource r WHERE {extra.render()})"
            params += extra.params
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


def _cursor(query: SearchQuery) -> list[Any]:
    """The parameter of `_after`'s condition, if the query has a cursor."""
    return [abs(query.cursor)] if query.cursor is not None else []


def _counted(ctes: str, keys: str, page: str, order: str) -> str:
    """`page` (each row with the count of `keys` beside it), run only while the CTE `keys`
    holds fewer rows than the last parameter; the one row with a NULL page says how many
    there were. Leading rows too many to be worth it cost only their count."""
    return (f"{ctes} SELECT w.*, k.n FROM (SELECT count(*) AS n FROM {keys}) k LEFT JOIN "
            f"LATERAL ({page}) w ON k.n < %s ORDER BY w.pk {order}")


def _firsts_page(keys: str, rows: str, order: str) -> str:
    """A page of the first count + 1 pks of the union of `rows` (`SELECT res_pk …` in pk
    order, at most a page, correlated with each row of `keys`): the first page of all."""
    return (f"SELECT {_PAGE_COLS}, r.patient_id FROM (SELECT DISTINCT x.res_pk FROM {keys} "
            f"CROSS JOIN LATERAL ({rows}) x ORDER BY x.res_pk {order} LIMIT %s) m "
            "JOIN resource r ON r.pk = m.res_pk")


def _walked_page(query: SearchQuery, walk: tuple[str, list[Any]], rest: Where, order: str
                 ) -> tuple[str, list[Any], bool]:
    """A page of the pks a walk gives in pk order (`SELECT res_pk …`, merged by bucket), the
    first count + 1 of them meeting `rest` (predicates on `r.pk`): the whole answer."""
    sql = (f"SELECT {_PAGE_COLS}, r.patient_id FROM (SELECT r.pk FROM (SELECT u.res_pk AS pk "
           f"FROM ({walk[0]}) u) r WHERE {rest.render()} ORDER BY r.pk {order} LIMIT %s) m "
           f"JOIN resource r ON r.pk = m.pk ORDER BY r.pk {order}")
    return sql, [*walk[1], *rest.params, query.count + 1], True


def _after(query: SearchQuery, backwards: bool, column: str = "r.pk") -> str:
    """The keyset condition on `column` for the query's cursor (its value is a parameter)."""
    if query.cursor is None:
        return ""
    return f" AND {column} < %s" if backwards else f" AND {column} > %s"


def _code_rows(query: SearchQuery, drv: Driver, backwards: bool) -> tuple[str, list[Any]]:
    """The condition on the driving code's index rows `d` after the cursor, and its
    parameters (`Session._driven_page_sql`, `_token_walk_sql`)."""
    params: list[Any] = [query.resource_type, drv.clause.name, drv.code, drv.system]
    if query.cursor is not None:
        params.append(abs(query.cursor))
    return ("d.res_type = %s AND d.param = %s AND d.code = %s AND d.system = %s"
            + _after(query, backwards, "d.res_pk")), params


def _probe(predicates: str) -> str:
    """The walk's join: each index row `d` probes its live resource `r` of the searched type
    with `predicates` (parameters: the type, then theirs), fenced by `OFFSET 0` so the planner
    cannot turn the probes into a join through `resource` in pk order."""
    return ("CROSS JOIN LATERAL (SELECT r.* FROM resource r WHERE r.pk = d.res_pk "
            f"AND NOT r.deleted AND r.res_type = %s AND {predicates} OFFSET 0) r")


#: Index rows a walk in index order probes before it leaves the page to the planner
#: (`Session._token_walk_sql`, `_newest_walk_sql`): a few milliseconds at most.
WALK = 2000
#: Index rows of a code the second, index-only walk reads when the first did not fill the page
#: (`Session.search`): about 2.4 µs each.
LONG_WALK = 16000
#: Leading index rows below which a page finds all its matches first (`_few_page_sql`).
FEW_IN_RANGE = 5000
#: Every pair's name: all are ready while nothing is being reindexed (`Session._ready_pairs`).
_ALL_PAIRS = frozenset(p.name for p in pairs.PAIRS)
#: Resources a `_has` walk probes (`Session._has_walk_sql`): about 0.06 ms each.
HAS_WALK = 1000

#: Parameters that shape a result page, not the match: they do not change a condition.
_NOT_CONDITION = frozenset({"_count", "_total", "_format", "_pretty", "_cursor"})


def _condition_key(res_type: str, condition: str) -> str:
    """One spelling per condition: `Patient?identifier=a%7Cb` and `identifier=a|b&_count=1` must
    take the same lock, or two requests writing the condition differently could both insert."""
    query = condition.split("?", 1)[-1]
    pairs = sorted((k, v) for k, v in parse_qsl(query, keep_blank_values=True)
                   if k not in _NOT_CONDITION)
    return f"{res_type}?{urlencode(pairs)}"


#: `_total=estimate` on SQLite counts at most this many matches (it has no planner estimate).
ESTIMATE_CAP = 10_000


def _keyset(query: SearchQuery, backwards: bool) -> tuple[str, list[Any]]:
    """Rows strictly after (before, when paging back) the cursor row in sort order, on the
    derived table `s` with key columns k0…: lexicographic over (null flag, key) pairs, then pk."""
    assert query.cursor is not None and query.cursor_key is not None
    cond = "s.pk < %s" if backwards else "s.pk > %s"
    params: list[Any] = [abs(query.cursor)]
    for i in reversed(range(len(query.sort))):
        value = query.cursor_key[i]
        k = f"s.k{i}"
        after = "<" if query.sort[i].descending else ">"
        if not backwards:
            if value is None:  # NULLs come last: only other NULLs can follow
                cond = f"({k} IS NULL AND {cond})"
            else:
                cond = f"({k} IS NULL OR {k} {after} %s OR ({k} = %s AND {cond}))"
                params = [value, value, *params]
        else:
            before = "<" if after == ">" else ">"
            if value is None:
                cond = f"({k} IS NOT NULL OR ({k} IS NULL AND {cond}))"
            else:
                cond = f"({k} {before} %s OR ({k} = %s AND {cond}))"
                params = [value, value, *params]
    return cond, params


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


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
