"""Named operations (R4 operations.html): `$everything` and Bulk Data `$export`, routed here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from akson.api.fhir import searchparameters
from akson.api.fhir.messages import FhirRequest, FhirResponse
from akson.api.fhir.operations import everything, export
from akson.fhir.outcome import FhirError

Route = tuple[Callable[..., Awaitable[FhirResponse]], tuple[Any, ...], bool]


def resolve_system(req: FhirRequest) -> Route:
    """`[base]/$export`, `[base]/$export-status/[job]` and `[base]/$export-file/[job]/[file]`."""
    path, method = req.path, req.method
    if req.in_bundle:
        # Asynchronous requests and file streams have no place in a Bundle response entry.
        raise FhirError(400, f"{path[0][:40]} cannot be used inside a Bundle", "not-supported")
    n = len(path)
    if path[0] == "$export" and n == 1:
        if method in ("GET", "POST"):
            return export.kickoff_system, (), True
        raise _not_allowed(method, "$export")
    if path[0] == "$export-status" and n == 2:
        if method == "GET":
            return export.status, (path[1],), False
        if method == "DELETE":
            return export.cancel, (path[1],), True
        raise _not_allowed(method, "$export-status")
    if path[0] == "$export-file" and n == 3:
        if method in ("GET", "HEAD"):
            return export.download, (path[1], path[2]), False
        raise _not_allowed(method, "$export-file")
    raise FhirError(404, f"No operation {path[0][:40]} at the base URL", "not-found")


def resolve_type(req: FhirRequest, res_type: str, name: str) -> Route:
    """`[base]/[type]/$name`: `Patient/$export`."""
    if res_type == "Patient" and name == "$export":
        _no_bundle(req, name)
        if req.method in ("GET", "POST"):
            return export.kickoff_patient, (), True
        raise _not_allowed(req.method, "Patient/$export")
    raise FhirError(404, f"No operation {name[:40]} on {res_type}", "not-found")


def resolve_instance(req: FhirRequest, res_type: str, res_id: str, name: str) -> Route:
    """`[base]/[type]/[id]/$name`: `$everything` on Patient and Encounter, `Group/[id]/$export`."""
    if name == "$everything" and res_type in ("Patient", "Encounter"):
        if req.method != "GET":
            raise _not_allowed(req.method, f"{res_type}/[id]/$everything")
        handler = (everything.patient_everything if res_type == "Patient"
                   else everything.encounter_everything)
        return handler, (res_id,), False
    if name == "$reindex-status" and res_type == "SearchParameter":
        if req.method != "GET":
            raise _not_allowed(req.method, "SearchParameter/[id]/$reindex-status")
        return searchparameters.reindex_status, (res_id,), False
    if name == "$export" and res_type == "Group":
        _no_bundle(req, name)
        if req.method in ("GET", "POST"):
            return export.kickoff_group, (res_id,), True
        raise _not_allowed(req.method, "Group/[id]/$export")
    raise FhirError(404, f"No operation {name[:40]} on {res_type}/[id]", "not-found")


def _no_bundle(req: FhirRequest, name: str) -> None:
    if req.in_bundle:
        raise FhirError(400, f"{name} cannot be used inside a Bundle", "not-supported")


def _not_allowed(method: str, where: str) -> FhirError:
    return FhirError(405, f"{method} is not supported on {where}", "not-supported")
