"""Bulk Data `$export`: kick-off, status, cancel and file download
(https://hl7.org/fhir/uv/bulkdata/STU2/export.html).

The kick-off (GET with query parameters, or POST with a `Parameters` body) only validates the
request and queues a job row; a background worker (`akson.export_worker`) writes the NDJSON files
under `export_dir/{job}/` and the manifest. Only the requester may poll, download or cancel a
job, and only until it expires (`AKSON_EXPORT_RETENTION_SECONDS` after it finished).
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

from akson.access.audit import agent_key
from akson.access.gate import GuardedSession
from akson.access.principal import to_json
from akson.access.token_error import TokenError
from akson.api.fhir.context import FhirContext
from akson.api.fhir.messages import FhirRequest, FhirResponse, http_date
from akson.fhir import dates, jsonio, search, shaping
from akson.fhir.ids import ID_RE
from akson.fhir.outcome import FhirError, Issue, operation_outcome
from akson.fhir.search import type_list
from akson.fhir.searchparams import SearchParamRegistry
from akson.fhir.validation import RESOURCE_TYPES
from akson.store import export as store_export

NDJSON = "application/fhir+ndjson"
_OUTPUT_FORMATS = {NDJSON, "application/ndjson", "ndjson"}
_NDJSON_ACCEPT = {NDJSON, "application/ndjson", "*/*", "application/*"}
#: Job ids are UUIDs we issued; file names are `{Type}-{n}.ndjson` (`errors-{n}.ndjson` for the
#: manifest's `error` files). Anything else is a 404 before it gets near the file system.
JOB_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
FILE_RE = re.compile(r"(?:[A-Z][A-Za-z]{1,63}|errors)-[0-9]{1,6}\.ndjson")
#: Seconds a client should wait between status polls while a job runs.
RETRY_AFTER = 2
#: Search result parameters make no sense in a `_typeFilter` and the IG requires an error.
_FILTER_FORBIDDEN = {"_count", "_cursor", "_total", "_sort", "_include", "_revinclude",
                     "_summary", "_elements", "_contained", "_containedType", "_format", "_pretty"}
_TYPE_FILTER_SPLIT = re.compile(r",(?=[A-Z][A-Za-z]+\?)")
_CHUNK = 1 << 20
#: `includeAssociatedData` values the IG defines (export.html#query-parameters); custom ones
#: start with `_`. This server supports none of them: Provenance is exported like any type.
_ASSOCIATED_DATA = {"LatestProvenanceResources", "RelevantProvenanceResources"}
#: A `patient` list longer than this is refused: it becomes one bound parameter per patient.
MAX_PATIENTS = 10_000
def job_dir(export_dir: str | Path, job_id: str) -> Path:
    """Where a job's files live; `job_id` must already match JOB_RE."""
    return Path(export_dir) / job_id


def remove_job_files(export_dir: str | Path, job_id: str) -> None:
    shutil.rmtree(job_dir(export_dir, job_id), ignore_errors=True)


def requester_of(req: FhirRequest) -> str:
    """Who is asking, as an export job records it: the actor's non-personal key
    (`akson.access.audit.agent_key`) bound to the issuer, client and unit it acts from, so the
    same HPR number at another unit, or a client of the same name at another issuer, is
    another requester. Only the same requester may poll, download or cancel the job
    (export.html#privacy-and-security-considerations lets a server limit them to the client that
    started the export)."""
    p = req.principal
    if p is None:
        raise TokenError("invalid_token")
    return "|".join((agent_key(p), p.issuer, p.client_id, p.orgnr_child or ""))[:500]


# ------------------------------------------------------------------ kick-off


async def kickoff_system(ctx: FhirContext, s: GuardedSession, req: FhirRequest) -> FhirResponse:
    """GET or POST [base]/$export: every resource on the server."""
    return await _kickoff(ctx, s, req, {"level": "system"}, None)


async def kickoff_patient(ctx: FhirContext, s: GuardedSession, req: FhirRequest) -> FhirResponse:
    """GET or POST [base]/Patient/$export: every resource in some patient's compartment."""
    return await _kickoff(ctx, s, req, {"level": "patient"}, None)


async def kickoff_group(ctx: FhirContext, s: GuardedSession, req: FhirRequest, group_id: str
                        ) -> FhirResponse:
    """GET or POST [base]/Group/[id]/$export: the compartments of the Group's member Patients."""
    current = await s.read("Group", group_id)
    if current is None:
        raise FhirError(404, f"Group/{group_id} is not known", "not-found")
    if current.deleted:
        raise FhirError(410, f"Group/{group_id} has been deleted", "deleted")
    members = _group_members(jsonio.loads(current.content or b"{}"), req.base_url)
    return await _kickoff(ctx, s, req, {"level": "group", "group": group_id}, members)


async def _kickoff(ctx: FhirContext, s: GuardedSession, req: FhirRequest, params: dict[str, Any],
                   members: set[str] | None) -> FhirResponse:
    # The IG lets a server refuse a kick-off without the header; a synchronous export is not
    # something we offer, so silence would only hide a client's mistake.
    if "respond-async" not in req.prefer:
        raise FhirError(400, "$export runs asynchronously: send 'Prefer: respond-async'",
                        "required")
    lenient = req.prefer.get("handling") == "lenient"
    pairs = list(req.query)
    if req.method == "POST":
        pairs += parameters_pairs(req)
    notes: list[str] = []
    params.update(parse_kickoff(pairs, ctx.registry, lenient=lenient, notes=notes))
    refs = params.pop("patient_refs")
    if refs:
        if req.method != "POST":
            _refuse(lenient, notes, "patient is a POST parameter (a Parameters body)")
        elif params["level"] == "system":
            _refuse(lenient, notes, "The patient parameter is for Patient and Group level exports")
        else:
            params["patients"] = await _patients(s, refs, req.base_url, members)
    params["notes"] = notes
    await s.may_export(params.get("patients") or ())
    params["requester"] = requester_of(req)
    # The worker applies the requester's access restriction when it runs: what it needs to
    # compute it again is stored with the job (the facts are looked up then, from the data).
    assert req.principal is not None
    params["principal"] = to_json(req.principal)
    params["base_url"] = req.base_url
    url = _request_url(req)
    job_id = await store_export.create_job(s.bookkeeping, url, orjson.dumps(params).decode(), dates.now_us())
    outcome = operation_outcome([Issue(f"Export job {job_id} queued", "informational",
                                       "information")])
    return FhirResponse(202, outcome, {"Content-Location": status_url(req.base_url, job_id)})


def parameters_pairs(req: FhirRequest) -> list[tuple[str, str]]:
    """A POST kick-off's `Parameters` body as (name, value) pairs, the same as query parameters
    (`patient` values as their references); 400 for anything else. An empty body is no
    parameters."""
    if not req.body and req.parsed_body is None:
        return []
    body = req.json()
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise FhirError(400, "The $export POST body must be a Parameters resource", "invalid")
    params = body.get("parameter") or []
    if not isinstance(params, list):
        raise FhirError(400, "Parameters.parameter must be an array", "invalid")
    out: list[tuple[str, str]] = []
    for i, param in enumerate(params):
        name = param.get("name") if isinstance(param, dict) else None
        if not isinstance(name, str) or not name:
            raise FhirError(400, f"Parameters.parameter[{i}] has no name", "invalid")
        values = [(k, v) for k, v in param.items() if k.startswith("value")]
        if len(values) != 1:
            raise FhirError(400, f"Parameters.parameter[{i}] ({name[:40]}) needs exactly one "
                            "value[x]", "invalid")
        kind, value = values[0]
        if name == "patient":
            ref = value.get("reference") if kind == "valueReference" and \
                isinstance(value, dict) else None
            if not isinstance(ref, str):
                raise FhirError(400, f"Parameters.parameter[{i}] (patient) must be a "
                                "valueReference with a reference", "invalid")
            out.append(("patient", ref))
        elif kind in ("valueString", "valueCode", "valueInstant", "valueDateTime", "valueUri") \
                and isinstance(value, str):
            out.append((name, value))
        else:
            raise FhirError(400, f"Parameters.parameter[{i}] ({name[:40]}) has an unsupported "
                            f"{kind[:40]}", "invalid")
    return out


def parse_kickoff(query: list[tuple[str, str]], registry: SearchParamRegistry, *,
                  lenient: bool = False, notes: list[str] | None = None) -> dict[str, Any]:
    """The job parameters from the kick-off's parameters; 400 for anything not understood.

    With `Prefer: handling=lenient` what is not supported is ignored instead, and said in
    `notes` (the worker puts them in the manifest's `error` files, as the IG asks).
    """
    notes = notes if notes is not None else []
    out: dict[str, Any] = {"types": None, "since": None, "filters": {}, "elements": None,
                           "patient_refs": []}
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
        elif key == "_elements":
            out["elements"] = sorted(set(out["elements"] or []) | set(element_list(value)))
        elif key == "patient":
            out["patient_refs"].append(value)
        elif key == "includeAssociatedData":
            for one in (v.strip() for v in value.split(",")):
                known = one in _ASSOCIATED_DATA or (one.startswith("_") and len(one) > 1)
                _refuse(lenient, notes, f"includeAssociatedData value '{one[:60]}' is "
                        + ("not supported by this server (it supports none)" if known
                           else "not defined by the Bulk Data IG"))
        elif key in ("_format", "_pretty"):
            continue
        else:
            _refuse(lenient, notes, f"$export does not support the parameter '{key[:40]}'")
    filter_queries(filters, registry)  # a bad filter is the client's 400 now, not a failed job
    return out


def _refuse(lenient: bool, notes: list[str], message: str) -> None:
    """400, or with lenient handling a note for the manifest's `error` files."""
    if not lenient:
        raise FhirError(400, message, "not-supported")
    notes.append(message + "; ignored (Prefer: handling=lenient)")


def element_list(value: str) -> list[str]:
    """`_elements` items, each `name` (every type) or `Type.name` (export.html#query-parameters);
    400 for a name the type does not have."""
    out: list[str] = []
    for item in (v.strip() for v in value.split(",")):
        res_type, dot, name = item.partition(".")
        if dot and res_type not in RESOURCE_TYPES:
            raise FhirError(400, f"_elements: '{item[:64]}' names no resource type")
        shaping.element_names(res_type if dot else None, name if dot else item)
        out.append(item)
    return out


def elements_for(elements: list[str] | None, res_type: str) -> tuple[str, ...]:
    """The `_elements` names that apply to `res_type`; none means the whole resource."""
    names = []
    for item in elements or ():
        prefix, dot, name = item.partition(".")
        if not dot:
            names.append(item)
        elif prefix == res_type:
            names.append(name)
    return tuple(dict.fromkeys(names))


def _group_members(group: dict[str, Any], base_url: str) -> set[str]:
    """Ids of the local Patients a Group's `member.entity` names."""
    out = set()
    for member in group.get("member") or ():
        ref = (member.get("entity") or {}).get("reference") if isinstance(member, dict) else None
        patient_id = _patient_id(ref, base_url) if isinstance(ref, str) else None
        if patient_id:
            out.add(patient_id)
    return out


def _patient_id(ref: str, base_url: str) -> str | None:
    if base_url and ref.startswith(base_url + "/"):
        ref = ref[len(base_url) + 1:]
    res_type, _, res_id = ref.partition("/")
    return res_id if res_type == "Patient" and ID_RE.fullmatch(res_id) else None


async def _patients(s: GuardedSession, refs: list[str], base_url: str, members: set[str] | None
                    ) -> list[str]:
    """The `patient` parameter's ids: local Patient references to live patients (Group
    members, at Group level); 400 naming the first that is not (export.html: the server
    SHOULD return an error)."""
    if len(refs) > MAX_PATIENTS:
        raise FhirError(400, f"At most {MAX_PATIENTS} patient parameters per export",
                        "too-costly")
    ids = []
    for ref in refs:
        patient_id = _patient_id(ref, base_url)
        if patient_id is None:
            raise FhirError(400, f"patient '{ref[:80]}' is not a reference to a Patient on this "
                            "server", "invalid")
        ids.append(patient_id)
    live = await store_export.live_patients(s.bookkeeping, sorted(set(ids)))
    if not s.reaches_all:  # a patient the caller may not see is "not on this server" to it
        live = {p for p in live if await s.exists("Patient", p)}
    for patient_id in ids:
        if patient_id not in live:
            raise FhirError(400, f"patient Patient/{patient_id} is not on this server",
                            "not-found")
        if members is not None and patient_id not in members:
            raise FhirError(400, f"patient Patient/{patient_id} is not a member of the Group",
                            "invalid")
    return sorted(live)


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
    """The kick-off URL for the manifest's `request`: without the parameters for a POST (IG)."""
    path = "/".join(req.path)
    query = req.query if req.method != "POST" else []
    return f"{req.base_url}/{path}" + (f"?{urlencode(query)}" if query else "")


def status_url(base_url: str, job_id: str) -> str:
    return f"{base_url}/$export-status/{job_id}"


def file_url(base_url: str, job_id: str, name: str) -> str:
    return f"{base_url}/$export-file/{job_id}/{name}"


# ------------------------------------------------------------------ status and cancel


async def status(ctx: FhirContext, s: GuardedSession, req: FhirRequest, job_id: str) -> FhirResponse:
    """GET the status URL: 202 while running, 200 with the manifest (and an `Expires` header:
    when its files go), 500 when it failed, 404 once cancelled or expired."""
    job = await _job(ctx, s, req, job_id)
    if job.status in ("queued", "running"):
        return FhirResponse(202, None, {"X-Progress": (job.progress or job.status)[:99],
                                        "Retry-After": str(RETRY_AFTER)})
    if job.status == "failed":
        return FhirResponse(500, operation_outcome([Issue(
            f"Export job failed: {job.error or 'unknown error'}", "exception")]))
    assert job.manifest is not None
    return FhirResponse(200, job.manifest.encode(), {
        "Content-Type": "application/json",
        "Expires": http_date(expires_at(ctx, job)),
    })


async def cancel(ctx: FhirContext, s: GuardedSession, req: FhirRequest, job_id: str) -> FhirResponse:
    """DELETE the status URL: stop the job (the worker notices at its next chunk), delete files."""
    await _job(ctx, s, req, job_id)
    if not await store_export.cancel_job(s.bookkeeping, job_id, dates.now_us()):
        raise FhirError(404, f"Export job {job_id} is not known", "not-found")
    await asyncio.to_thread(remove_job_files, ctx.settings.export_dir, job_id)
    return FhirResponse(202, operation_outcome([Issue(f"Export job {job_id} cancelled",
                                                      "informational", "information")]))


def expires_at(ctx: FhirContext, job: store_export.Job) -> int:
    """When a finished job's files stop being served (µs): its end plus the retention time."""
    return (job.finished or dates.now_us()) + ctx.settings.export_retention_seconds * 1_000_000


async def _job(ctx: FhirContext, s: GuardedSession, req: FhirRequest, job_id: str) -> store_export.Job:
    """The caller's live job; 404 for an unknown, cancelled or expired job or another's job."""
    job = await store_export.get_job(s.bookkeeping, job_id, requester=requester_of(req)) \
        if JOB_RE.fullmatch(job_id) else None
    if job is None or job.status == "cancelled":
        raise FhirError(404, f"Export job {job_id[:40]} is not known", "not-found")
    # The worker deletes expired files in its own time; from the moment of expiry they are
    # not served, whether or not it has come round yet.
    if job.status == "expired" or (job.status in ("completed", "failed")
                                   and expires_at(ctx, job) <= dates.now_us()):
        raise FhirError(404, f"Export job {job_id} has expired: its files were kept for "
                        f"{ctx.settings.export_retention_seconds} seconds; start a new export",
                        "not-found")
    return job


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


async def download(ctx: FhirContext, s: GuardedSession, req: FhirRequest, job_id: str, name: str
                   ) -> FhirResponse:
    """GET [base]/$export-file/[job]/[file]: one NDJSON file named in the job's manifest."""
    job = await _job(ctx, s, req, job_id)
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
