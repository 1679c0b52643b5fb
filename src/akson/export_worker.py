"""The background runner of Bulk Data `$export` jobs: stored JSON → NDJSON files, in flat memory.

A job streams each resource type from the database in keyset-paged chunks and appends the stored
bytes, one resource per line, to `export_dir/{job}/{Type}-{n}.ndjson`. Only one chunk is ever in
memory, so an export of any size runs in the same few megabytes
(https://hl7.org/fhir/uv/bulkdata/STU2/export.html). What could not be exported, and what a
lenient kick-off ignored, goes as OperationOutcomes into `errors-{n}.ndjson` (the manifest's
`error` array). Finished jobs' files are deleted once their retention time is over.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from akson.api.fhir.operations.export import (
    elements_for,
    file_url,
    filter_queries,
    job_dir,
    remove_job_files,
)
from akson.api.polling_worker import PollingWorker
from akson.fhir import dates, jsonio, shaping
from akson.fhir.outcome import FhirError, Issue, operation_outcome, where
from akson.fhir.search import SearchQuery
from akson.fhir.validation import RESOURCE_TYPES
from akson.store import export as store_export
from akson.store.repository import ResourceStore

log = logging.getLogger("akson.export")

#: What the access gate gives the worker for a job (from its recorded requester): predicates
#: for every export query, or None for no restriction. Raising FhirError fails the job.
AccessHook = Callable[[store_export.Job], Awaitable[store_export.ExportAccess | None]]
#: Records that a chunk of `type` with these patients' data is being exported for the job's
#: requester (the gate's audit, akson.access.gate.GuardedSession.record_export).
AuditHook = Callable[[store_export.Job, str, Sequence[str]], Awaitable[None]]
#: At most this many OperationOutcomes about missing Group members (one Group can name many).
MAX_MEMBER_ISSUES = 1000
#: Patients a job remembers having named in its audit records, so each is named once per job.
#: Past this many (~100 bytes each) the memory starts over: a patient may then be named again,
#: never not at all.
AUDITED_PATIENTS = 200_000


#: A row of `store_export.type_chunk`: (pk, id, JSON, patient id).
Row = tuple[int, str, bytes, str | None]


class _Lost(Exception):
    """The job was cancelled, or another worker took it over: stop without a result."""


class ExportWorker(PollingWorker):
    """Runs queued export jobs one at a time in the server's event loop.

    Several server processes may share a database: a job is claimed in one statement, and a
    job whose worker stopped beating for `stale_seconds` is taken over and restarted.
    """

    name = "akson-export-worker"

    def __init__(self, store: ResourceStore, export_dir: str | Path, *, poll_seconds: float = 0.5,
                 chunk_rows: int = 5000, file_lines: int = 100_000,
                 stale_seconds: float = 300, retention_seconds: float = 24 * 60 * 60,
                 sweep_seconds: float = 60, access: AccessHook | None = None,
                 audit: AuditHook | None = None) -> None:
        super().__init__()
        self.store = store
        self.export_dir = Path(export_dir)
        self.poll_seconds = poll_seconds
        self.chunk_rows = chunk_rows
        self.file_lines = file_lines
        self.stale_us = int(stale_seconds * 1_000_000)
        self.retention_us = int(retention_seconds * 1_000_000)
        self.sweep_seconds = sweep_seconds
        self.access = access
        self.audit = audit
        self.worker_id = str(uuid.uuid4())
        self._current: str | None = None
        self._next_sweep = 0.0

    async def release_current(self) -> None:
        if self._current is not None:
            async with self.store.session(write=True) as s:
                await store_export.requeue_job(s, self._current, self.worker_id)
            self._current = None

    async def expire_once(self, now: int | None = None) -> int:
        """Delete the files of jobs that finished more than the retention time before `now`
        and mark them expired (their status URL then says so); how many were expired.

        Files first, then the mark: a crash in between leaves the job to the next sweep. A
        download already streaming keeps its open file (POSIX), so it is not cut short.
        """
        before = (now if now is not None else dates.now_us()) - self.retention_us
        async with self.store.session(write=False) as s:
            ids = await store_export.expired_jobs(s, before, 100)
        done = 0
        for job_id in ids:
            await asyncio.to_thread(remove_job_files, self.export_dir, job_id)
            async with self.store.session(write=True) as s:
                done += await store_export.expire_job(s, job_id, before)
        return done

    async def run_once(self) -> bool:
        """Claim and run one job; False when the queue was empty. Expired jobs are swept
        first, at most every `sweep_seconds` (an idle server polls with one cheap read)."""
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + self.sweep_seconds
            await self.expire_once()
        async with self.store.session(write=False) as s:
            if not await store_export.has_work(s):
                return False
        now = dates.now_us()
        async with self.store.session(write=True) as s:
            job = await store_export.claim_job(s, self.worker_id, now, now - self.stale_us)
        if job is None:
            return False
        self._current = job.id
        try:
            await self._run(job)
        except _Lost:
            log.info("export job %s was cancelled or taken over", job.id)
            await self._after_loss(job.id)
        except Exception as exc:  # noqa: BLE001 - a failed job is reported, the runner goes on
            if await self._cancelled(job.id):  # e.g. its folder vanished under a DELETE
                await asyncio.to_thread(remove_job_files, self.export_dir, job.id)
                self._current = None
                return True
            message = exc.diagnostics if isinstance(exc, FhirError) else \
                f"internal error ({type(exc).__name__})"
            log.error("export job %s failed type=%s at %s", job.id, type(exc).__name__, where(exc))
            await asyncio.to_thread(remove_job_files, self.export_dir, job.id)
            async with self.store.session(write=True) as s:
                await store_export.fail_job(s, job.id, self.worker_id, message, dates.now_us())
        self._current = None
        return True

    async def _after_loss(self, job_id: str) -> None:
        # A job another worker took over keeps its folder: that worker is writing it now.
        if await self._cancelled(job_id):
            await asyncio.to_thread(remove_job_files, self.export_dir, job_id)

    async def _cancelled(self, job_id: str) -> bool:
        async with self.store.session(write=False) as s:
            job = await store_export.get_job(s, job_id)
        return job is None or job.status == "cancelled"

    async def _run(self, job: store_export.Job) -> None:
        params: dict[str, Any] = orjson.loads(job.params)
        assert job.transaction_time is not None
        base_url = params["base_url"]
        issues = [Issue(note, "not-supported", "warning") for note in params.get("notes") or ()]
        group_pk = None
        if params["level"] == "group":
            async with self.store.session(write=False) as s:
                group_pk = await store_export.group_pk(s, params["group"])
                missing = [] if group_pk is None else await store_export.missing_members(
                    s, group_pk, MAX_MEMBER_ISSUES)
            if group_pk is None:
                raise FhirError(404, f"Group/{params['group']} no longer exists")
            issues += [Issue(f"Group member Patient/{pid} is not on this server; nothing of "
                             "theirs was exported", "not-found", "warning") for pid in missing]
        patients = params.get("patients")
        scope = store_export.ExportScope(params["level"], group_pk, params.get("since"),
                                         job.transaction_time,
                                         tuple(patients) if patients is not None else None)
        access = await self.access(job) if self.access is not None else None
        filters = filter_queries(params.get("filters") or {}, self.store.registry)
        folder = job_dir(self.export_dir, job.id)
        await asyncio.to_thread(_fresh_dir, folder)
        errors = _Files(folder, "errors", self.file_lines)
        outputs: list[dict[str, Any]] = []
        total = 0
        audited: set[str] = set()
        try:
            await asyncio.to_thread(errors.write, [_outcome(i) for i in issues])
            for res_type in params.get("types") or sorted(RESOURCE_TYPES):
                files = await self._export_type(
                    job, folder, res_type, scope, filters.get(res_type, ()), total,
                    _Shape(elements_for(params.get("elements"), res_type), errors), access,
                    audited)
                for name, count in files:
                    outputs.append({"type": res_type, "url": file_url(base_url, job.id, name),
                                    "count": count})
                    total += count
        finally:
            await asyncio.to_thread(errors.close)
        manifest = {
            "transactionTime": dates.to_instant(job.transaction_time),
            "request": job.request,
            # The files are served by this server under the same authorisation as the
            # kick-off, to the same requester (export.html#response---complete-status).
            "requiresAccessToken": True,
            "output": outputs,
            "error": [{"type": "OperationOutcome", "url": file_url(base_url, job.id, name),
                       "count": count} for name, count in errors.files],
        }
        async with self.store.session(write=True) as s:
            done = await store_export.finish_job(s, job.id, self.worker_id,
                                                 orjson.dumps(manifest).decode(), dates.now_us())
        if not done:
            raise _Lost()

    async def _export_type(self, job: store_export.Job, folder: Path, res_type: str,
                           scope: store_export.ExportScope, filters: Sequence[SearchQuery],
                           before: int, shape: _Shape, access: store_export.ExportAccess | None,
                           audited: set[str]) -> list[tuple[str, int]]:
        """Stream one type into `{Type}-{n}.ndjson` files; returns (file name, lines) per file.

        Before a chunk is written, the patients whose data it holds and whom the job has not
        named yet (`audited`) are named in an audit record: once per job, as one access to
        their record. Recording each patient in every type's chunks spent 70 % of an export's
        time in the audit log (1,700 patients a chunk; docs/performance.md).

        The next chunk is read while this one is audited and written, so the database and
        this process work at the same time; at most two chunks are held."""
        writer = _Files(folder, res_type, self.file_lines)

        async def chunk(after: int) -> list[Row]:
            async with self.store.session(write=False) as s:
                return await store_export.type_chunk(s, res_type, scope, after_pk=after,
                                                     limit=self.chunk_rows, filters=filters,
                                                     access=access)

        ahead = asyncio.create_task(chunk(0))
        try:
            while True:
                rows = await ahead
                if not rows:
                    break
                ahead = asyncio.create_task(chunk(rows[-1][0]))
                patients = {row[3] for row in rows if row[3] is not None} - audited
                if self.audit is not None and patients:
                    await self.audit(job, res_type, sorted(patients))
                    if len(audited) + len(patients) > AUDITED_PATIENTS:
                        audited.clear()
                    audited |= patients
                await asyncio.to_thread(_write_chunk, writer, shape, rows)
                del rows
                progress = f"{res_type}: {writer.total} resources; {before + writer.total} in all"
                async with self.store.session(write=True) as s:
                    if not await store_export.beat(s, job.id, self.worker_id, progress,
                                                   dates.now_us()):
                        raise _Lost()
        finally:
            ahead.cancel()
            await asyncio.gather(ahead, return_exceptions=True)
            await asyncio.to_thread(writer.close)
        return writer.files


def _outcome(issue: Issue) -> bytes:
    return orjson.dumps(operation_outcome([issue]))


class _Shape:
    """`_elements` for one type; a resource that cannot be subset is reported, not exported."""

    def __init__(self, elements: tuple[str, ...], errors: _Files) -> None:
        self.elements = elements
        self.errors = errors

    def apply(self, rows: list[Row], res_type: str) -> list[bytes]:
        if not self.elements:
            return [row[2] for row in rows]  # the stored bytes, as a read serves them
        out = []
        for _, res_id, content, _ in rows:
            try:
                # The server's default depth limit: a resource stored deeper (the operator
                # raised AKSON_MAX_JSON_DEPTH) is reported rather than parsed without a bound.
                out.append(jsonio.dumps(shaping.shape(jsonio.loads(content),
                                                      elements=self.elements)))
            except Exception as exc:  # noqa: BLE001 - one bad row must not fail the export
                why = exc.diagnostics if isinstance(exc, FhirError) else type(exc).__name__
                self.errors.write([_outcome(Issue(
                    f"{res_type}/{res_id} could not be exported with _elements: {why}",
                    "exception"))])
        return out


def _write_chunk(writer: _Files, shape: _Shape, rows: list[Row]) -> None:
    writer.write(shape.apply(rows, writer.res_type))


def _fresh_dir(folder: Path) -> None:
    """An empty folder for the job (a restarted job starts over)."""
    remove_job_files(folder.parent, folder.name)
    folder.mkdir(parents=True)


class _Files:
    """NDJSON files of one type, a new file every `limit` lines (keeps each download bounded)."""

    def __init__(self, folder: Path, res_type: str, limit: int) -> None:
        self.folder = folder
        self.res_type = res_type
        self.limit = limit
        self.files: list[tuple[str, int]] = []
        self.total = 0
        self._handle: IO[bytes] | None = None
        self._lines = 0

    def write(self, contents: list[bytes]) -> None:
        start = 0
        while start < len(contents):
            if self._handle is None or self._lines == self.limit:
                self._next_file()
            assert self._handle is not None
            take = min(self.limit - self._lines, len(contents) - start)
            # Stored JSON is compact (no raw newlines): one resource, one line.
            self._handle.write(b"\n".join(contents[start:start + take]) + b"\n")
            self._lines += take
            self.total += take
            name, _ = self.files[-1]
            self.files[-1] = (name, self._lines)
            start += take

    def _next_file(self) -> None:
        self.close()
        name = f"{self.res_type}-{len(self.files) + 1}.ndjson"
        # "x": never reuse a file; a missing folder (the job was cancelled) raises here.
        self._handle = open(self.folder / name, "xb")  # noqa: SIM115 - closed in close()
        self.files.append((name, 0))
        self._lines = 0

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
