"""The SQL of (re)indexing search parameters: reindex-job rows and keyset-paged index batches.

A batch is one transaction: read up to `limit` live resources of a type after a pk, delete the
parameter's old index rows for exactly those resources and insert the new ones. Committing per
batch keeps every transaction short, so the server goes on serving while a large table is
reindexed (https://hl7.org/fhir/R4/searchparameter.html, "SearchParameter.status").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from akson.fhir import indexing, jsonio, pairs
from akson.fhir.search import ExtraRows, index_rows
from akson.fhir.searchparams import SearchParamRegistry
from akson.store.repository import _INSERT, Session

#: Every table that holds index rows: those the repository writes.
_ROW_TABLES = tuple(_INSERT)
# IN lists stay below SQLite's historical limit of 999 bound parameters.
_IN_CHUNK = 500


@dataclass(frozen=True)
class ReindexJob:
    """One row of `reindex_job` (times in µs since the epoch, UTC)."""

    id: int
    action: str  # index | remove
    resource_id: str | None
    param_url: str
    param_code: str
    base: tuple[str, ...]
    status: str  # queued | running | completed | failed | cancelled
    done: int
    total: int | None
    created: int
    started: int | None
    finished: int | None
    error: str | None


_COLS = ("id, action, resource_id, param_url, param_code, base, status, done, total, created, "
         "started, finished, error")


def _job(row: Sequence[Any]) -> ReindexJob:
    return ReindexJob(int(row[0]), row[1], row[2], row[3], row[4], tuple(row[5].split()), row[6],
                      int(row[7]), row[8], row[9], row[10], row[11], row[12])


# ------------------------------------------------------------------ job rows


async def enqueue(s: Session, action: str, url: str, code: str, base: Sequence[str],
                  resource_id: str | None, now: int) -> int:
    """Queue a job; an `index` job cancels the queued `index` jobs of the same url (it redoes
    their work). `remove` jobs are never cancelled: their rows must go whatever follows."""
    if action == "index":
        await s.tx.execute(
            "UPDATE reindex_job SET status = 'cancelled', finished = %s, error = 'superseded' "
            "WHERE param_url = %s AND action = 'index' AND status = 'queued'", (now, url))
    row = await s.tx.fetchone(
        "INSERT INTO reindex_job (action, resource_id, param_url, param_code, base, status, "
        "done, created) VALUES (%s, %s, %s, %s, %s, 'queued', 0, %s) RETURNING id",
        (action, resource_id, url, code, " ".join(base), now))
    assert row is not None
    return int(row[0])


async def get_job(s: Session, job_id: int) -> ReindexJob | None:
    row = await s.tx.fetchone(f"SELECT {_COLS} FROM reindex_job WHERE id = %s", (job_id,))
    return _job(row) if row else None


async def jobs_for_resource(s: Session, resource_id: str, limit: int = 10) -> list[ReindexJob]:
    """The latest jobs of one SearchParameter resource, newest first."""
    rows = await s.tx.fetchall(
        f"SELECT {_COLS} FROM reindex_job WHERE resource_id = %s ORDER BY id DESC LIMIT %s",
        (resource_id, limit))
    return [_job(r) for r in rows]


async def changes(s: Session, after_id: int) -> list[ReindexJob]:
    """Jobs newer than `after_id` and every unfinished job, oldest first: what a server process
    polls to learn of SearchParameter changes made by other processes, and what is pending."""
    rows = await s.tx.fetchall(
        f"SELECT {_COLS} FROM reindex_job WHERE id > %s UNION "
        f"SELECT {_COLS} FROM reindex_job WHERE status IN ('queued', 'running') ORDER BY 1",
        (after_id, ))
    return [_job(r) for r in rows]


async def next_job(s: Session) -> ReindexJob | None:
    """The oldest unfinished job: jobs run one at a time, in order, across all processes."""
    row = await s.tx.fetchone(
        f"SELECT {_COLS} FROM reindex_job WHERE status IN ('queued', 'running') "
        "ORDER BY id LIMIT 1")
    return _job(row) if row else None


async def claim(s: Session, job_id: int, worker: str, now: int, stale_before: int) -> bool:
    """Take a queued job, or a running one whose worker stopped beating before `stale_before`."""
    return await _changed(
        s, "UPDATE reindex_job SET status = 'running', worker = %s, heartbeat = %s, "
        "started = %s, done = 0 WHERE id = %s AND (status = 'queued' OR "
        "(status = 'running' AND heartbeat < %s)) RETURNING id",
        (worker, now, now, job_id, stale_before))


async def beat(s: Session, job_id: int, worker: str, done: int, total: int | None, now: int
               ) -> bool:
    """Record progress; False when the job is no longer this worker's (then roll back)."""
    return await _changed(
        s, "UPDATE reindex_job SET done = %s, total = %s, heartbeat = %s "
        "WHERE id = %s AND worker = %s AND status = 'running' RETURNING id",
        (done, total, now, job_id, worker))


async def finish(s: Session, job_id: int, worker: str, status: str, error: str | None,
                 now: int) -> bool:
    """End a running job as `completed`, `failed` or `cancelled`."""
    return await _changed(
        s, "UPDATE reindex_job SET status = %s, error = %s, finished = %s, heartbeat = %s "
        "WHERE id = %s AND worker = %s AND status = 'running' RETURNING id",
        (status, error, now, now, job_id, worker))


async def release(s: Session, job_id: int, worker: str) -> None:
    """Give a running job back to the queue (the process is stopping); it restarts from zero."""
    await s.tx.execute(
        "UPDATE reindex_job SET status = 'queued', worker = NULL WHERE id = %s AND worker = %s "
        "AND status = 'running'", (job_id, worker))


async def _changed(s: Session, sql: str, params: tuple[Any, ...]) -> bool:
    # RETURNING rather than a row count: psycopg in pipeline mode reports no count.
    return await s.tx.fetchone(sql, params) is not None


# ------------------------------------------------------------------ resources


async def live_search_parameters(s: Session) -> list[tuple[str, bytes]]:
    """(id, JSON) of every live SearchParameter resource (a handful: read them all)."""
    rows = await s.tx.fetchall(
        "SELECT res_id, content FROM resource WHERE res_type = 'SearchParameter' AND NOT deleted "
        "ORDER BY pk")
    return [(r[0], bytes(r[1])) for r in rows]


async def count(s: Session, res_type: str | None) -> int:
    """Live resources of a type (None: of every type)."""
    if res_type is None:
        row = await s.tx.fetchone("SELECT COUNT(*) FROM resource WHERE NOT deleted")
    else:
        row = await s.tx.fetchone(
            "SELECT COUNT(*) FROM resource WHERE res_type = %s AND NOT deleted", (res_type,))
    return int(row[0]) if row else 0


async def index_batch(s: Session, registry: SearchParamRegistry, res_type: str | None, *,
                      after_pk: int, limit: int, codes: Sequence[str] | None,
                      since: int | None = None) -> tuple[int, int] | None:
    """Rebuild the index rows of the next `limit` live resources after `after_pk`.

    `registry` decides which rows are extracted; `codes` which old rows are deleted first (None:
    all of the resource's rows, and its patient compartment is recomputed too). `since` keeps only
    resources written at or after it (µs). Returns (last pk, resources done), None when done.
    On PostgreSQL the rows are locked: a concurrent update of one of them waits for this batch,
    then writes its own rows, so an old version's rows never overwrite a newer version's.
    """
    sql = "SELECT pk, res_type, content FROM resource WHERE pk > %s AND NOT deleted"
    params: list[Any] = [after_pk]
    if res_type is not None:
        sql += " AND res_type = %s"
        params.append(res_type)
    if since is not None:
        sql += " AND last_updated >= %s"
        params.append(since)
    sql += " ORDER BY pk LIMIT %s" + (" FOR UPDATE" if s.dialect == "postgresql" else "")
    rows = await s.tx.fetchall(sql, (*params, limit))
    if not rows:
        return None
    pks = [int(r[0]) for r in rows]
    await _delete_rows(s, pks, codes)
    for pk, rtype, content in rows:
        doc = jsonio.loads(bytes(content))
        idx, extra = index_rows(doc, registry)
        if codes is not None:  # the registry may hold a composite's components: keep ours only
            idx, extra = _only(idx, extra, codes)
        await s._insert_index(int(pk), rtype, idx, extra)
        if codes is None:
            await s.tx.execute("UPDATE resource SET patient_id = %s WHERE pk = %s",
                               (indexing.patient_compartment(doc, idx), pk))
    return pks[-1], len(pks)


def _only(idx: indexing.IndexRows, extra: ExtraRows, codes: Sequence[str]
          ) -> tuple[indexing.IndexRows, ExtraRows]:
    """The rows of the parameters named `codes` (each row starts with its parameter code)."""
    names = set(_row_names(codes))
    for rows in (idx, extra):
        for name, value in vars(rows).items():
            if isinstance(value, list):
                setattr(rows, name, [r for r in value if r[0] in names])
    return idx, extra


def _row_names(codes: Sequence[str]) -> list[str]:
    """The `param` of every index row the parameters `codes` give: their own, a reference's
    `:identifier` token rows (`code:identifier`) and the paired rows they are part of."""
    return list(dict.fromkeys([n for c in codes for n in (c, f"{c}:identifier")]
                              + [p.name for c in codes for p in pairs.involving(c)]))


async def _delete_rows(s: Session, pks: list[int], codes: Sequence[str] | None) -> None:
    names = None if codes is None else _row_names(codes)
    for i in range(0, len(pks), _IN_CHUNK):
        chunk = pks[i:i + _IN_CHUNK]
        marks = ", ".join(["%s"] * len(chunk))
        where, params = f"res_pk IN ({marks})", list[Any](chunk)
        if names is not None:
            where += f" AND param IN ({', '.join(['%s'] * len(names))})"
            params += names
        for table in _ROW_TABLES:
            await s.tx.execute(f"DELETE FROM {table} WHERE {where}", params)


async def remove_rows(s: Session, code: str, res_types: Sequence[str] | None) -> None:
    """Delete every index row of parameter `code` on these types (None: on all types), and
    the paired rows it is part of (the chain rows go with them, by trigger)."""
    names = _row_names([code])
    marks = ", ".join(["%s"] * len(names))
    if s.dialect == "postgresql":
        # One statement removes every row: the chain triggers' lock per target (migration
        # 0024) would fill the lock table. Nothing writes these rows any more to race with.
        await s.tx.execute("SET LOCAL akson.chain_locks = 'off'")
    for table in _ROW_TABLES:
        if res_types is None:
            await s.tx.execute(f"DELETE FROM {table} WHERE param IN ({marks})", names)
            continue
        for t in res_types:
            await s.tx.execute(f"DELETE FROM {table} WHERE res_type = %s AND param IN ({marks})",
                               (t, *names))


async def latest_id(s: Session) -> int:
    """The highest job id (0 when there are none)."""
    row = await s.tx.fetchone("SELECT MAX(id) FROM reindex_job")
    return int(row[0]) if row and row[0] is not None else 0


async def ids_with_url(s: Session, url: str) -> list[str]:
    """Ids of live SearchParameter resources whose `url` is `url` (its `url` index rows)."""
    rows = await s.tx.fetchall(
        "SELECT res_id FROM resource WHERE res_type = 'SearchParameter' AND NOT deleted AND pk IN "
        "(SELECT res_pk FROM sp_uri WHERE res_type = 'SearchParameter' AND param = 'url' "
        "AND uri = %s)", (url,))
    return [r[0] for r in rows]
