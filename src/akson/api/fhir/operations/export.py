"""Bulk Data `$export`: kick-off, status, cancel and file download
(https://hl7.org/fhir/uv/bulkdata/STU2/export.html).

The kick-off only validates the request and queues a job row; a background worker
(`akson.export_worker`) writes the NDJSON files under `export_dir/{job}/` and the manifest.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl, urlencode

import orjson

from akson.api.fhir.context import FhirContext
from akson.api.fhir.messages import FhirRequest, FhirResponse, http_date
from akson.fhir import dates, search
from akson.fhir.outcome import FhirError, Issue, operation_outcome
from akson.fhir.search import type_list
from akson.fhir.searchparams import SearchParamRegistry
from akson.fhir.validation import RESOURCE_TYPES
from akson.store import export as store_export
from akson.store.repository import Session

NDJSON = "application/fhir+ndjson"
_OUTPUT_FORMATS = {NDJSON, "application/ndjson", "ndjson"}
_NDJSON_ACCEPT = {NDJSON, "application/ndjson", "*/*", "application/*"}
#: Job ids are UUIDs we issued; file names are `{Type}-{n}.ndjson`. Anything else is a 404
#: before it gets near the file system (no path traversal).
JOB_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
FILE_RE = re.compile(r"[A-Z][A-Za-z]{1,63}-[0-9]{1,6}\.ndjson")
#: Seconds a client should wait between status polls while a job runs.
RETRY_AFTER = 2
#: Search result parameters make no sense in a `_typeFilter` and the IG requires an error.
_FILTER_FORBIDDEN = {"_count", "_cursor", "_total", "_sort", "_include", "_revinclude",
                     "_summary", "_elements", "_contained", "_containedType", "_format", "_pretty"}
_TYPE_FILTER_SPLIT = re.compile(r",(?=[A-Z][A-Za-z]+\?)")
_CHUNK = 1 << 20


def job_dir(export_dir: str | Path, job_id: str) -> Path:
    """Where a job's files live; `job_id` must already match JOB_RE."""
    return Path(export_dir) / job_id


def remove_job_files(export_dir: str | Path, job_id: str) -> None:
    shutil.rmtree(job_dir(export_dir, job_id), ignore_errors=True)


# ------------------------------------------------------------------ kick-off


async def kickoff_system(ctx: FhirContext, s: Session, req: FhirRequest) -> FhirResponse:
    """GET [base]/$export: every resource on the server."""
    return await _kickoff(ctx, s, req, {"level": "system"})


async def kickoff_patient(ctx: FhirContext, s: Session, req: FhirRequest) -> FhirResponse:
    """GET [base]/Patient/$export: every resource in some patient's compartment."""
    return await _kickoff(ctx, s, req, {"level": "patient"})


async def kickoff_group(ctx: FhirContext, s: Session, req: FhirRequest, group_id: str
                        ) -> FhirResponse:
    """GET [base]/Group/[id]/$export: the compartments of the Group's member Patients."""
    current = await s.read("Group", group_id)
    if current is None:
        raise FhirError(404, f"Group/{group_id} is not known", "not-found")
    if current.deleted:
        raise FhirError(410, f"Group/{group_id} has been deleted", "deleted")
    return await _kickoff(ctx, s, req, {"level": "group", "group": group_id})


async def _kickoff(ctx: FhirContext, s: Session, req: FhirRequest, params: dict[str, Any]
                   ) -> FhirResponse:
    if "respond-async" not in req.prefer:
        raise FhirError(400, "$export runs asynchronously: send 'Prefer: respond-async'",
                        "required")
    params.update(parse_kickoff(req.query, ctx.registry,
                                lenient=req.prefer.get("handling") == "lenient"))
    params["base_url"] = req.base_url
    url = _request_url(req)
    job_id = await store_export.create_job(s, url, orjson.dumps(params).decode(), dates.now_us())
    outcome = operation_outcome([Issue(f"Export job {job_id} queued", "informational",
                                       "information")])
    return FhirResponse(202, outcome, {"Content-Location": status_url(req.base_url, job_id)})


def parse_kickoff(query: list[tuple[str, str]], registry: SearchParamRegistry, *,
                  lenient: bool = False) -> dict[str, Any]:
    """The job parameters from the kick-off query; 400 for anything not understood."""
    out: dict[str, Any] = {"types": None, "since": None, "filters": {}}
    filters: dict[str, list[str]] = out["filters"]
    for key, value in query:
        if key == "_outputFormat":
            if value not in _OUTPUT_FORMATS:
                raise FhirError(400, f"_outputFormat {value[:60]} is not supported; use {NDJSON}",
                                "not-supported")
        elif key == "_type":
            types = type_list(value)
            out["types"] = sorted(set(out["types"] or []) | set(types))
        elif key == "_since":
            out["since"] = dates.date_range(value)[0]
        elif key == "_typeFilter":
            for one in _TYPE_FILTER_SPLIT.split(value):
                res_type, query_text = _split_filter(one)
                filters.setdefault(res_type, []).append(query_text)
        elif key in ("_format", "_pretty"):
            continue
        elif not lenient:
            raise FhirError(400, f"$export does not support the parameter '{key[:40]}'",
                            "not-supported")
    filter_queries(filters, registry)  # a bad filter is the client's 400 now, not a failed job
    return out


def _split_filter(text: str) -> tuple[str, str]:
    res_type, sep, query_text = text.partition("?")
    if not sep or res_type not in RESOURCE_TYPES or not query_text:
        raise FhirError(400, f"_typeFilter '{text[:80]}' is not [type]?[search parameters]")
    for name, _ in parse_qsl(query_text, keep_blank_values=True):
        if name.split(":", 1)[0] in _FILTER_FORBIDDEN:
            raise FhirError(400, f"_typeFilter may not use the result parameter '{name[:40]}'",
                            "not-supported")
    return res_type, query_text


def filter_queries(filters: dict[str, list[str]], registry: SearchParamRegistry
                   ) -> dict[str, list[search.SearchQuery]]:
    """Parse `_typeFilter` queries with the search parser (strict: an unknown parameter is 400)."""
    return {
        res_type: [search.parse(res_type, parse_qsl(text, keep_blank_values=True),
                                registry=registry) for text in texts]
        for res_type, texts in filters.items()
    }


def _request_url(req: FhirRequest) -> str:
    path = "/".join(req.path)
    return f"{req.base_url}/{path}" + (f"?{urlencode(req.query)}" if req.query else "")


def status_url(base_url: str, job_id: str) -> str:
    return f"{base_url}/$export-status/{job_id}"


def file_url(base_url: str, job_id: str, name: str) -> str:
    return f"{base_url}/$export-file/{job_id}/{name}"


# ------------------------------------------------------------------ status and cancel


async def status(ctx: FhirContext, s: Session, req: FhirRequest, job_id: str) -> FhirResponse:
    """GET the status URL: 202 while running, 200 with the manifest, 5xx when it failed."""
    job = await _job(s, job_id)
    if job.status in ("queued", "running"):
        return FhirResponse(202, None, {"X-Progress": (job.progress or job.status)[:200],
                                        "Retry-After": str(RETRY_AFTER)})
    if job.status == "failed":
        return FhirResponse(500, operation_outcome([Issue(
            f"Export job failed: {job.error or 'unknown error'}", "exception")]))
    assert job.manifest is not None
    return FhirResponse(200, job.manifest.encode(), {"Content-Type": "application/json",
                                                      "Expires": _expires(job.finished)})


async def cancel(ctx: FhirContext, s: Session, req: FhirRequest, job_id: str) -> FhirResponse:
    """DELETE the status URL: stop the job (the worker notices at its next chunk), delete files."""
    await _job(s, job_id)
    if not await store_export.cancel_job(s, job_id, dates.now_us()):
        raise FhirError(404, f"Export job {job_id} is not known", "not-found")
    await asyncio.to_thread(remove_job_files, ctx.settings.export_dir, job_id)
    return FhirResponse(202, operation_outcome([Issue(f"Export job {job_id} cancelled",
                                                      "informational", "information")]))


async def _job(s: Session, job_id: str) -> store_export.Job:
    job = await store_export.get_job(s, job_id) if JOB_RE.fullmatch(job_id) else None
    if job is None or job.status == "cancelled":
        raise FhirError(404, f"Export job {job_id[:40]} is not known", "not-found")
    return job


def _expires(finished: int | None) -> str:
    # Files are kept until the client deletes the job; a day is what we promise.
    return http_date((finished or dates.now_us()) + 86_400_000_000)


# ------------------------------------------------------------------ download


@dataclass
class FileResponse(FhirResponse):
    """A file streamed in chunks by the HTTP adapter (which calls `stream`), never read whole."""

    file: IO[bytes] | None = None
    media_type: str = NDJSON

    async def stream(self, send: Callable, *, head: bool) -> None:
        assert self.file is not None
        try:
            size = os.fstat(self.file.fileno()).st_size
            headers = [(b"content-type", self.media_type.encode()),
                       (b"content-length", str(size).encode())]
            await send({"type": "http.response.start", "status": self.status, "headers": headers})
            if head:
                await send({"type": "http.response.body", "body": b""})
                return
            while True:
                chunk = await asyncio.to_thread(self.file.read, _CHUNK)
                more = len(chunk) == _CHUNK
                await send({"type": "http.response.body", "body": chunk, "more_body": more})
                if not more:
                    return
        finally:
            self.file.close()


async def download(ctx: FhirContext, s: Session, req: FhirRequest, job_id: str, name: str
                   ) -> FhirResponse:
    """GET [base]/$export-file/[job]/[file]: one NDJSON file named in the job's manifest."""
    job = await _job(s, job_id)
    if job.status != "completed" or not FILE_RE.fullmatch(name) or job.manifest is None:
        raise FhirError(404, f"No export file {name[:80]}", "not-found")
    manifest = orjson.loads(job.manifest)
    names = {o["url"].rsplit("/", 1)[-1] for o in manifest["output"] + manifest["error"]}
    if name not in names:
        raise FhirError(404, f"No export file {name[:80]}", "not-found")
    accept = req.header("accept")
    if accept and not {m.split(";")[0].strip().lower() for m in accept.split(",")} & _NDJSON_ACCEPT:
        raise FhirError(406, f"Export files are {NDJSON}", "not-supported")
    try:
        handle = open(job_dir(ctx.settings.export_dir, job_id) / name, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise FhirError(404, f"Export file {name[:80]} is gone", "not-found") from None
    return FileResponse(200, file=handle)
