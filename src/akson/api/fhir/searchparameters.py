"""SearchParameter resources as data: checked, registered live, and indexed by background jobs.

A SearchParameter write (create, update, patch, delete; also in a transaction Bundle) is checked
before it is stored (422 naming the element when the server could not index it), changes the
process's live registry at once (so new writes are indexed under it immediately) and queues a job
in `reindex_job` in the same transaction. A `ReindexWorker` in every server process runs queued
jobs one at a time, in id order, batch by batch, so the server keeps serving; it also polls the
job table, which is how a process learns of parameters another process added (see
docs/search-parameters.md). https://hl7.org/fhir/R4/searchparameter.html
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from akson.access.gate import GuardedSession
from akson.api.fhir.context import FhirContext
from akson.api.fhir.messages import FhirRequest, FhirResponse
from akson.api.polling_worker import PollingWorker
from akson.fhir import dates, jsonio, pairs
from akson.fhir.outcome import FhirError, Issue, where
from akson.fhir.searchparams import SearchParam, SearchParamRegistry, compile_param
from akson.fhir.validation import RESOURCE_TYPES
from akson.store import reindex
from akson.store.repository import ResourceStore, Session, Stored

log = logging.getLogger("akson.reindex")

_COMMON = ("Resource", "DomainResource")
#: After the main pass a job re-walks resources written from this long before it was queued:
#: a write that extracted its rows just before the parameter was registered, but committed after
#: the pass went by its row, is caught there (PostgreSQL; SQLite serialises writers).
TAIL_US = 300 * 1_000_000
#: What `$reindex-status` puts on each issue, machine-readable (Akson's own extension).
JOB_EXTENSION = "https://akson.no/fhir/StructureDefinition/reindex-job"


# ------------------------------------------------------------------ the write path


def _builtin(url: str) -> bool:
    return SearchParamRegistry.default().by_url(url) is not None


def _unprocessable(element: str, diagnostics: str, code: str = "not-supported") -> FhirError:
    return FhirError(422, diagnostics, code, (element,))


async def check(ctx: FhirContext, s: GuardedSession, res_type: str, resource: Mapping[str, Any],
                res_id: str | None = None) -> None:
    """Refuse (422, naming the element) a SearchParameter this server could not index.

    Does nothing for other types, nor for a copy of a built-in parameter (same url: stored as
    data, the built-in stays in force). Checked: a url (the parameter's identity here) that no
    other SearchParameter resource has; code, base and a known type; an
    expression the FHIRPath compiler handles; a type the index supports (not composite or
    special); a code that does not already mean another parameter on one of the bases.
    """
    if res_type != "SearchParameter":
        return
    s.check_type_writable(res_type)
    url = resource.get("url")
    if not isinstance(url, str) or not url:
        raise _unprocessable("SearchParameter.url", "SearchParameter.url is required", "required")
    if _builtin(url):
        return  # a copy of a built-in definition (e.g. from an IG package): stored, nothing to do
    try:
        param, problem = compile_param(resource)
    except FhirError as exc:
        raise _unprocessable(exc.expression[0] if exc.expression else "SearchParameter",
                             exc.diagnostics, "invalid") from None
    if problem is not None:
        raise _unprocessable("SearchParameter.expression",
                             f"SearchParameter.expression cannot be indexed: {problem}")
    if param.type in ("composite", "special"):
        raise _unprocessable("SearchParameter.type",
                             f"Search parameters of type {param.type} cannot be added at run time")
    for b in param.base:
        if b not in RESOURCE_TYPES and b not in _COMMON:
            raise _unprocessable("SearchParameter.base", f"'{b[:64]}' is not an R4 resource type",
                                 "invalid")
        existing = ctx.registry.get(b, param.code)
        if existing is not None and existing.url != url:
            raise _unprocessable(
                "SearchParameter.code", f"'{param.code}' already names the search parameter "
                f"{existing.url[:200]} on {b}", "duplicate")
    others = [i for i in await reindex.ids_with_url(s.bookkeeping, url) if i != res_id]
    if others:
        raise _unprocessable("SearchParameter.url",
                             f"SearchParameter/{others[0]} already has the url {url[:200]}",
                             "duplicate")


async def changed(ctx: FhirContext, s: Session, stored: Stored) -> None:
    """After a SearchParameter version is written (or deleted) in session `s`: update the live
    registry and queue the jobs that bring the index in line (same transaction as the write)."""
    if stored.res_type != "SearchParameter":
        return
    old = None
    if stored.version > 1:
        previous = await s.vread(stored.res_type, stored.res_id, stored.version - 1)
        old = _active_param(previous)
    new = _active_param(stored)
    now = dates.now_us()
    registry = ctx.registry
    # The process-wide default (e.g. an import's context) stays the R4 set; the jobs queued
    # below are what servers act on.
    live = registry is not SearchParamRegistry.default()
    if old is not None:
        if new is None or new.url != old.url or new.code != old.code:
            dropped: tuple[str, ...] = old.base
        else:
            dropped = tuple(b for b in old.base if b not in new.base)
        if live and (new is None or new.url != old.url):
            registry.remove(old.url)
        if dropped:
            await reindex.enqueue(s, "remove", old.url, old.code, dropped, stored.res_id, now)
    if new is not None:
        assert stored.content is not None
        await reindex.enqueue(s, "index", new.url, new.code, new.base, stored.res_id, now)
        if live:
            registry.add(jsonio.loads(stored.content))
            registry.pending.add(new.url)


def _active_param(stored: Stored | None) -> SearchParam | None:
    """The parameter a stored SearchParameter version defines, if live, active and custom."""
    if stored is None or stored.deleted or stored.content is None:
        return None
    resource = jsonio.loads(stored.content)
    if resource.get("status") != "active":
        return None
    try:
        param, problem = compile_param(resource)
    except FhirError:
        return None
    if problem is not None or not param.url or _builtin(param.url):
        return None
    return param


# ------------------------------------------------------------------ the read side


def pending_warnings(registry: SearchParamRegistry, res_type: str,
                     pairs: Iterable[tuple[str, str]]) -> list[Issue]:
    """Warnings for the search parameters of a query whose index is still being built.

    Such a search is answered (new writes are indexed already), with a warning entry that results
    may be incomplete; the first name of a chain is what is checked.
    """
    if not registry.pending:
        return []
    out = []
    for name in dict.fromkeys(k.split(":", 1)[0].split(".", 1)[0] for k, _ in pairs):
        p = registry.get(res_type, name)
        if p is not None and p.url in registry.pending:
            out.append(Issue(f"The search parameter '{name}' is still being indexed: resources "
                             "written before it was added may be missing from the results",
                             "incomplete", "warning"))
    return out


async def reindex_status(ctx: FhirContext, s: GuardedSession, req: FhirRequest, res_id: str
                         ) -> FhirResponse:
    """GET [base]/SearchParameter/[id]/$reindex-status: the parameter's latest reindex jobs as an
    OperationOutcome, newest first; each issue carries the job in the `reindex-job` extension."""
    if await s.read("SearchParameter", res_id) is None:
        raise FhirError(404, f"SearchParameter/{res_id} is not known", "not-found")
    jobs = await reindex.jobs_for_resource(s.bookkeeping, res_id)
    if not jobs:
        issues = [{"severity": "information", "code": "informational",
                   "diagnostics": f"SearchParameter/{res_id} has no reindex jobs"}]
    else:
        issues = [_job_issue(job) for job in jobs]
    return FhirResponse(200, {"resourceType": "OperationOutcome", "issue": issues})


def _job_issue(job: reindex.ReindexJob) -> dict:
    what = "index" if job.action == "index" else "remove the index of"
    of = f" of {job.total}" if job.total is not None else ""
    text = (f"Job {job.id}: {what} '{job.param_code}' on {', '.join(job.base)}: {job.status}, "
            f"{job.done}{of} resources")
    if job.error:
        text += f" ({job.error})"
    ext: list[dict[str, Any]] = [
        {"url": "id", "valueInteger": job.id},
        {"url": "action", "valueCode": job.action},
        {"url": "code", "valueCode": job.param_code},
        {"url": "status", "valueCode": job.status},
        {"url": "done", "valueInteger": job.done},
    ]
    if job.total is not None:
        ext.append({"url": "total", "valueInteger": job.total})
    for name, us in (("started", job.started), ("finished", job.finished)):
        if us is not None:
            ext.append({"url": name, "valueInstant": dates.to_instant(us)})
    severity = {"failed": "error"}.get(job.status, "information")
    return {"extension": [{"url": JOB_EXTENSION, "extension": ext}], "severity": severity,
            "code": "exception" if job.status == "failed" else "informational",
            "diagnostics": text}


# ------------------------------------------------------------------ running jobs


class Lost(Exception):
    """The job stopped being this worker's (another took it over): stop, roll back the batch."""


Progress = Callable[[int, int | None], None]


async def run_job(store: ResourceStore, registry: SearchParamRegistry, job: reindex.ReindexJob,
                  worker: str, *, batch_rows: int = 1000, pause_seconds: float = 0.0,
                  progress: Progress | None = None) -> tuple[str, str | None]:
    """Run a claimed job to its end; returns the final (status, error) it was recorded with.

    `index`: rebuild the parameter's rows on its base types, a batch per transaction, then the
    tail pass (see TAIL_US). `remove`: delete its rows. `all` (the CLI without --param): rebuild
    every row of every resource with the whole registry. `progress(done, total)` after a batch.
    """
    if job.action == "remove":
        async with store.session(write=True) as s:
            await reindex.remove_rows(s, job.param_code, _types(job.base))
            return await _finish(s, job, worker, "completed", None)
    base: tuple[str, ...] = ("Resource",)
    if job.action == "all":
        rows_registry, codes = registry, None
    else:
        param = registry.by_url(job.param_url)
        if param is None or param.code != job.param_code or set(param.base) != set(job.base):
            async with store.session(write=True) as s:
                return await _finish(s, job, worker, "cancelled", "superseded")
        # A composite's rows are built from its components, a pair's (akson.fhir.pairs) from
        # both its parameters: they must be in the registry too (only the rows of this
        # parameter and its pairs are written; see reindex.index_batch).
        components = [c for c in registry if c.url in {d for d, _ in param.components}]
        partners = {registry.get(p.res_type, code) for p in pairs.involving(param.code)
                    if p.res_type in param.base for code in (p.token, p.other)}
        rows_registry = SearchParamRegistry(
            [param, *components, *(p for p in partners if p is not None and p is not param)])
        codes, base = [param.code], param.base
    types: tuple[str | None, ...] = _types(base) or (None,)
    async with store.session(write=False) as s:
        total = sum([await reindex.count(s, t) for t in types])
    done = 0
    for since in (None, job.created - TAIL_US):
        for t in types:
            after = 0
            while True:
                async with store.session(write=True) as s:
                    step = await reindex.index_batch(s, rows_registry, t, after_pk=after,
                                                     limit=batch_rows, codes=codes, since=since)
                    if step is None:
                        break
                    after = step[0]
                    if since is None:
                        done += step[1]
                    if not await reindex.beat(s, job.id, worker, done, max(total, done),
                                              dates.now_us()):
                        raise Lost()
                if progress is not None and since is None:
                    progress(done, max(total, done))
                # Let requests waiting on the event loop (SQLite runs on it) go first.
                await asyncio.sleep(pause_seconds)
    async with store.session(write=True) as s:
        return await _finish(s, job, worker, "completed", None)


def _types(base: tuple[str, ...]) -> tuple[str, ...] | None:
    """The resource types a parameter's rows live on (None: every type)."""
    return None if any(b in _COMMON for b in base) else base


async def _finish(s: Session, job: reindex.ReindexJob, worker: str, status: str,
                  error: str | None) -> tuple[str, str | None]:
    if not await reindex.finish(s, job.id, worker, status, error, dates.now_us()):
        raise Lost()
    return status, error


class ReindexWorker(PollingWorker):
    """Keeps one process's registry in line with the stored SearchParameters and runs jobs.

    Every `poll_seconds` it reads the job rows newer than the last it saw (plus the unfinished
    ones): new rows name SearchParameters that changed, which it re-reads and (un)registers; the
    unfinished `index` jobs are the registry's `pending` set. Then it claims the oldest
    unfinished job, if no live worker holds it, and runs it.
    """

    name = "akson-reindex-worker"

    def __init__(self, store: ResourceStore, registry: SearchParamRegistry, *,
                 poll_seconds: float = 0.5, batch_rows: int = 1000, pause_seconds: float = 0.0,
                 stale_seconds: float = 300) -> None:
        super().__init__()
        self.store = store
        self.registry = registry
        self.poll_seconds = poll_seconds
        self.batch_rows = batch_rows
        self.pause_seconds = pause_seconds
        self.stale_us = int(stale_seconds * 1_000_000)
        self.worker_id = str(uuid.uuid4())
        self._seen: int | None = None  # highest job id applied; None: stored params not loaded
        self._current: int | None = None

    async def load(self) -> None:
        """Register every stored, active SearchParameter (at startup, before serving)."""
        async with self.store.session(write=False) as s:
            latest = await reindex.latest_id(s)
            stored = await reindex.live_search_parameters(s)
        for res_id, content in stored:
            param = _active_param(Stored("SearchParameter", res_id, 1, 0, False, content))
            if param is not None:
                self.registry.add(jsonio.loads(content))
        self._seen = latest
        await self.sync()

    async def sync(self) -> None:
        """Apply SearchParameter changes recorded since the last sync; refresh `pending`."""
        if self._seen is None:
            await self.load()
            return
        async with self.store.session(write=False) as s:
            jobs = await reindex.changes(s, self._seen)
            new = [j for j in jobs if j.id > self._seen]
            current = {rid: await s.read("SearchParameter", rid)
                       for rid in dict.fromkeys(j.resource_id for j in new if j.resource_id)}
        for j in new:
            if j.action == "remove" and not _builtin(j.param_url):
                self.registry.remove(j.param_url)
        for stored in current.values():
            param = _active_param(stored)
            if param is not None and stored is not None and stored.content is not None:
                self.registry.add(jsonio.loads(stored.content))
        if new:
            self._seen = new[-1].id
        self.registry.pending = {j.param_url for j in jobs if j.action in ("index", "all")
                                 and j.status in ("queued", "running")}

    async def release_current(self) -> None:
        """A job in progress goes back to the queue (it restarts from zero)."""
        if self._current is not None:
            async with self.store.session(write=True) as s:
                await reindex.release(s, self._current, self.worker_id)
            self._current = None

    async def run_once(self) -> bool:
        """Sync, then claim and run the oldest unfinished job; False when there was none to run."""
        await self.sync()
        async with self.store.session(write=False) as s:
            job = await reindex.next_job(s)
        if job is None:
            return False
        now = dates.now_us()
        async with self.store.session(write=True) as s:
            if not await reindex.claim(s, job.id, self.worker_id, now, now - self.stale_us):
                return False  # another process runs it
        self._current = job.id
        try:
            await run_job(self.store, self.registry, job, self.worker_id,
                          batch_rows=self.batch_rows, pause_seconds=self.pause_seconds)
        except Lost:
            log.info("reindex job %s was taken over by another worker", job.id)
        except Exception as exc:  # noqa: BLE001 - a failed job is recorded, the worker goes on
            log.error("reindex job %s failed type=%s at %s", job.id, type(exc).__name__, where(exc))
            async with self.store.session(write=True) as s:
                await reindex.finish(s, job.id, self.worker_id, "failed",
                                     f"internal error ({type(exc).__name__})", dates.now_us())
        self._current = None
        await self.sync()
        return True
