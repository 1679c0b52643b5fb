"""`akson import`: load Bundles and NDJSON into the store through the normal FHIR interactions.

Every resource passes the same validation and indexing as a REST write. Bundles run as the
transaction or batch they are, through the FHIR router. NDJSON lines are validated one by one (a
bad line is rejected with its reason, the rest load) and bulk-loaded in chunks, one transaction
each. Resources with an `id` keep it, so references between files hold.

NDJSON is parsed, validated and indexed in worker processes while this process copies the
previous chunks into the database, so the CPU work and the database's work overlap (the
speed target is in docs/performance.md).
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from tqdm import tqdm

from akson.access.audit import ChainedAuditSink, Source
from akson.access.gate import Gate
from akson.access.policy import bulk_refusal
from akson.access.principal import Principal
from akson.access.scopes import parse_scopes
from akson.api.fhir import router
from akson.api.fhir.context import FhirContext
from akson.api.fhir.messages import FhirRequest, FhirResponse
from akson.api.fhir.paging import audit_key
from akson.config import Settings
from akson.fhir import dates, jsonio
from akson.fhir.outcome import FhirError
from akson.fhir.searchparams import SearchParamRegistry
from akson.fhir.validation import validate
from akson.store import first_load, reindex
from akson.store.audit_log import AuditLog
from akson.store.bulk import (
    COPY_TABLES,
    CopyChunk,
    CopyReady,
    Prepared,
    allocate_pks,
    copy_ready,
    keys_of,
    prepare,
)
from akson.store.database import connect, is_retryable
from akson.store.migrate import upgrade
from akson.store.repository import ResourceStore

CHUNK = 1000
BASE_URL = "urn:akson:import"


@dataclass
class Summary:
    """What an import did: counts, and each rejection with where it was and why."""

    loaded: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    chunks: int = 0

    def render(self) -> str:
        lines = [f"Loaded {self.loaded} resources; rejected {len(self.rejected)}."]
        lines += [f"  rejected {where}: {why}" for where, why in self.rejected[:200]]
        if len(self.rejected) > 200:
            lines.append(f"  … and {len(self.rejected) - 200} more")
        return "\n".join(lines)


def source_files(paths: list[str]) -> list[Path]:
    """The .json/.ndjson files named or found (recursively, sorted) below named folders."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.suffix in (".json", ".ndjson"))
        else:
            out.append(path)
    return out


def run_import(settings: Settings, paths: list[str], *, progress: bool = True,
               chunk: int = CHUNK) -> Summary:
    """Load the files; NDJSON `chunk` lines to a transaction."""
    upgrade(settings.database_url)
    return asyncio.run(_run(settings, source_files(paths), progress, chunk))


async def _run(settings: Settings, files: list[Path], progress: bool, chunk: int) -> Summary:
    registry = SearchParamRegistry.default().copy()
    db = connect(settings.database_url, pool_size=WRITERS + 1)
    await db.open()
    store = ResourceStore(db, registry)
    sink = ChainedAuditSink(AuditLog(db, key=audit_key(settings.database_url),
                                     chains=settings.audit_chains),
                            Source(site=settings.audit_site or socket.gethostname()))
    ctx = FhirContext(store, registry, settings, Gate(store, sink))
    summary = Summary()
    bar = tqdm(total=sum(f.stat().st_size for f in files), unit="B", unit_scale=True,
               disable=not progress, desc="import")
    try:
        custom = await _stored_search_parameters(ctx)
        for param in custom:
            registry.add(param)
        for path in files:
            if path.suffix != ".ndjson":
                await _json(ctx, path, summary)
                bar.update(path.stat().st_size)
        ndjson = [p for p in files if p.suffix == ".ndjson"]
        analysed = bool(ndjson) and await _ndjson(ctx, ndjson, custom, summary, bar, chunk)
        if summary.loaded and not analysed:
            await _analyze(ctx)
    finally:
        bar.close()
        await db.close()
    return summary


async def _analyze(ctx: FhirContext) -> None:
    """Fresh statistics for the planner after a load. On PostgreSQL the tables a bulk load
    writes are analysed `WRITERS` at a time: a whole-database ANALYZE after a Synthea import
    took 3.3 s, a twelfth of the import."""
    if ctx.store.db.dialect != "postgresql":
        async with ctx.store.session(write=True) as s:
            await s.analyze()
        return
    tables = deque(COPY_TABLES)

    async def analyze_next() -> None:
        while tables:
            table = tables.popleft()
            async with ctx.store.session(write=True) as s:
                await s.analyze(table)

    await asyncio.gather(*(analyze_next() for _ in range(WRITERS)))


async def _stored_search_parameters(ctx: FhirContext) -> list[dict]:
    """The server's own SearchParameters, so imported resources are indexed for them too."""
    out = []
    async with ctx.store.session(write=False) as s:
        for _, content in await reindex.live_search_parameters(s):
            resource = jsonio.loads(content)
            if resource.get("status") == "active":
                out.append(resource)
    return out


async def _json(ctx: FhirContext, path: Path, summary: Summary) -> None:
    try:
        doc = jsonio.loads(path.read_bytes(), max_depth=ctx.settings.max_json_depth)
    except FhirError as err:
        summary.rejected.append((str(path), err.diagnostics))
        return
    if isinstance(doc, dict) and doc.get("resourceType") == "Bundle" and doc.get("type") in (
        "transaction", "batch"
    ):
        resp = await call(ctx, FhirRequest("POST", [], parsed_body=doc, base_url=BASE_URL))
        if resp.status >= 300:
            summary.rejected.append((str(path), _why(resp)))
            return
        count_bundle(resp, str(path), summary)
        return
    await _resources(ctx, [(str(path), doc)], summary)


def count_bundle(resp: FhirResponse, where: str, summary: Summary) -> None:
    body = orjson.loads(resp.body_bytes())
    for i, entry in enumerate(body.get("entry") or []):
        status = str(entry.get("response", {}).get("status", ""))
        if status[:1] == "2":
            summary.loaded += 1
        else:
            outcome = entry.get("response", {}).get("outcome") or {}
            issues = outcome.get("issue") or [{}]
            summary.rejected.append((f"{where} entry {i}", issues[0].get("diagnostics", status)))


@dataclass(frozen=True, slots=True)
class _Lines:
    """Consecutive lines of one file, `count` of them not blank, as one byte string (cheap to
    hand to a worker process); `first` is the number of the first."""

    path: str
    first: int
    data: bytes
    count: int

    def numbered(self) -> Iterator[tuple[str, bytes]]:
        """The non-blank lines, each with its `file:line`."""
        for offset, line in enumerate(self.data.split(b"\n")):
            if line.strip():
                yield f"{self.path}:{self.first + offset}", line


def _chunks(paths: list[Path], size: int) -> Iterator[_Lines]:
    """The lines of the files, up to `size` non-blank ones at a time."""
    for path in paths:
        with path.open("rb") as handle:
            lines: list[bytes] = []
            first = count = 0
            for number, line in enumerate(handle, 1):
                if not lines:
                    first = number
                lines.append(line)
                if line.strip():
                    count += 1
                    if count >= size:
                        yield _Lines(str(path), first, b"".join(lines), count)
                        lines, count = [], 0
            if count:
                yield _Lines(str(path), first, b"".join(lines), count)


async def _ndjson(ctx: FhirContext, paths: list[Path], custom: list[dict], summary: Summary,
                  bar: Any, size: int) -> bool:
    """Prepare chunks in worker processes, a few ahead; write them as they are ready.

    On PostgreSQL the workers also format the COPY lines (primary keys are drawn from the
    sequence when a chunk is handed out), so this process only sends bytes, and `WRITERS`
    chunks are written at once, each in its own transaction: the database's share of the work
    (mostly index insertion) then uses both cores instead of one. Order still holds where it
    matters: a later line with the same id is a newer version, so a chunk that shares an id
    with one being written waits for it. A failure stops the import; the chunks committed
    before it (and one written beside it) stay.

    Into an empty store (a first load) the lookup indexes are built and the tables analysed
    after the copy, `WRITERS` at a time, as the chain rows are added (akson.store.first_load,
    ADR 0023) — also when the load fails. True if so (the tables then have fresh statistics).
    """
    workers = max(1, min(4, (os.cpu_count() or 2)))
    copy = ctx.store.db.dialect == "postgresql"
    writers = WRITERS if copy else 1  # SQLite serialises writers anyway
    ahead: deque[Future] = deque()
    writing: deque[tuple[asyncio.Task, set[tuple[str, str]]]] = deque()
    loop = asyncio.get_running_loop()
    args = (custom, ctx.settings.allow_synthetic_ids, ctx.settings.max_json_depth)

    async def hand_over(result: _Result) -> None:
        keys = set(keys_of(result[1]))
        while writing and (len(writing) >= writers or any(keys & k for _, k in writing)):
            task, _ = writing.popleft()
            await task
        writing.append((asyncio.create_task(_write(ctx, result, summary, bar)), keys))

    url = ctx.settings.database_url
    first = copy and await asyncio.to_thread(first_load.begin, url)
    try:
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker,
                                 initargs=args) as pool:
            for chunk in _chunks(paths, size):
                if copy:
                    async with ctx.store.session(write=False) as s:
                        pks = await allocate_pks(s, chunk.count)
                    ahead.append(pool.submit(_prepare_chunk, chunk, pks))
                else:
                    ahead.append(pool.submit(_prepare_chunk, chunk))
                if len(ahead) > workers:
                    await hand_over(await asyncio.wrap_future(ahead.popleft(), loop=loop))
            while ahead:
                await hand_over(await asyncio.wrap_future(ahead.popleft(), loop=loop))
            while writing:
                await writing.popleft()[0]
    finally:
        # After a failure, let the chunk written beside it end (commit or roll back) before the
        # connections close.
        await asyncio.gather(*(task for task, _ in writing), return_exceptions=True)
        if first:
            bar.set_description("import: building indexes")
            # The chain fill runs beside the builds: alone it leaves a core idle.
            await asyncio.gather(asyncio.to_thread(first_load.restore_chain_rows, url),
                                 *(asyncio.to_thread(first_load.build, url)
                                   for _ in range(WRITERS)))
    return first


#: How many chunks are written at once on PostgreSQL (see `_ndjson`).
WRITERS = 2
#: How often a chunk is written again after losing a deadlock to the chunk beside it (a
#: Patient in one chunk and its Observations in the other take the chain-row locks of
#: ADR 0020 in opposite orders).
ATTEMPTS = 4

Prepared_ = list[Prepared] | CopyChunk
_Result = tuple[list[tuple[str, str]], Prepared_, int]


async def _write(ctx: FhirContext, result: _Result, summary: Summary, bar: Any) -> None:
    rejected, prepared, size = result
    summary.rejected += rejected
    if prepared:
        for attempt in range(ATTEMPTS):
            try:
                async with ctx.gate.session(IMPORTER, write=True, bulk=True) as g:
                    await g.import_chunk(prepared)
                break
            except Exception as exc:
                if not (is_retryable(exc) and attempt + 1 < ATTEMPTS):
                    raise
        summary.chunks += 1
        summary.loaded += len(keys_of(prepared))
        if summary.chunks & (summary.chunks - 1) == 0 and ctx.store.db.dialect == "postgresql":
            # Chunks 1, 2, 4, 8, …: fresh statistics while the table grows. With the counts of
            # an emptier table PostgreSQL checks each chunk's ids by scanning `resource` instead
            # of probing its unique index, and the import slows down quadratically.
            async with ctx.store.session(write=True) as s:
                await s.analyze("resource")
    bar.update(size)


_worker: dict[str, Any] = {}


def _init_worker(custom: list[dict], allow_synthetic_ids: bool, max_depth: int) -> None:
    registry = SearchParamRegistry.default().copy()
    for param in custom:
        registry.add(param)
    _worker.update(registry=registry, allow_synthetic_ids=allow_synthetic_ids,
                   max_depth=max_depth)


def _prepare_chunk(chunk: _Lines, pks: list[int] | None = None) -> _Result:
    """In a worker: parse, validate and index each line; (rejections, prepared, bytes read).

    With `pks` (one per non-blank line, PostgreSQL) the resources come back as COPY lines.
    """
    registry = _worker["registry"]
    now = dates.now_us()
    rejected: list[tuple[str, str]] = []
    prepared: list[Prepared] = []
    ready: list[CopyReady] = []
    for i, (where, line) in enumerate(chunk.numbered()):
        try:
            resource = jsonio.loads(line, max_depth=_worker["max_depth"])
        except FhirError as err:
            rejected.append((where, err.diagnostics))
            continue
        issues = validate(resource, allow_synthetic_ids=_worker["allow_synthetic_ids"])
        refusal = issues[0].diagnostics if issues else bulk_refusal(resource)
        if refusal:
            rejected.append((where, refusal))
            continue
        res_id = resource.get("id") or str(uuid.uuid4())
        p = prepare(resource["resourceType"], res_id, resource, registry, now)
        if pks is None:
            prepared.append(p)
        else:
            ready.append(copy_ready(p, pks[i], plain=b"\\" not in line))
    return rejected, (prepared if pks is None else CopyChunk.of(ready)), len(chunk.data)


async def _resources(ctx: FhirContext, items: list[tuple[str, object]], summary: Summary) -> None:
    """Validate each resource, then load the valid ones in one transaction (a single .json)."""
    valid: list[Prepared] = []
    now = dates.now_us()
    for where, resource in items:
        issues = validate(resource, allow_synthetic_ids=ctx.settings.allow_synthetic_ids)
        refusal = issues[0].diagnostics if issues else bulk_refusal(resource)  # type: ignore[arg-type]
        if refusal:
            summary.rejected.append((where, refusal))
            continue
        assert isinstance(resource, dict)
        res_id = resource.get("id") or str(uuid.uuid4())
        valid.append(prepare(resource["resourceType"], res_id, resource, ctx.registry, now))
    if not valid:
        return
    async with ctx.gate.session(IMPORTER, write=True, bulk=True) as g:
        await g.import_chunk(valid)
    summary.loaded += len(valid)


#: Who `akson import` acts as: an operator's local system client with every scope. Its Bundle
#: writes pass the access gate and are audited like any other client's.
IMPORTER = Principal(kind="system", issuer="akson:local", subject="akson-import",
                     client_id="akson-import", scopes=parse_scopes("system/*.*"))


async def call(ctx: FhirContext, req: FhirRequest) -> FhirResponse:
    req.headers.setdefault("prefer", "return=minimal")
    req.principal = req.principal or IMPORTER
    try:
        return await router.handle(ctx, req)
    except FhirError as err:
        return FhirResponse(err.status, err.outcome())


def _why(resp: FhirResponse) -> str:
    body = resp.body if isinstance(resp.body, dict) else orjson.loads(resp.body_bytes() or b"{}")
    issues = body.get("issue") or [{}]
    return str(issues[0].get("diagnostics") or f"HTTP {resp.status}")
