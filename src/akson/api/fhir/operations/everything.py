"""`$everything` on a Patient or an Encounter (R4 patient-operation-everything.html,
encounter-operation-everything.html), keyset-paged like search."""

from __future__ import annotations

from akson.access.gate import GuardedSession
from akson.api.fhir import paging
from akson.api.fhir.context import FhirContext
from akson.api.fhir.messages import FhirRequest, FhirResponse
from akson.api.fhir.responses import searchset
from akson.fhir import dates
from akson.fhir.outcome import FhirError
from akson.fhir.search import type_list

#: Parameters that shape the response only.
_IGNORED = {"_format", "_pretty"}


async def patient_everything(ctx: FhirContext, s: GuardedSession, req: FhirRequest, res_id: str
                             ) -> FhirResponse:
    """GET [base]/Patient/[id]/$everything: the patient's record and the shared resources it
    references (practitioners, organisations, locations, medications), one level deep."""
    await _require_live(s, "Patient", res_id)
    return await _page(ctx, s, req, "Patient", res_id)


async def encounter_everything(ctx: FhirContext, s: GuardedSession, req: FhirRequest, res_id: str
                               ) -> FhirResponse:
    """GET [base]/Encounter/[id]/$everything: the Encounter, what refers to it and what it
    refers to."""
    await _require_live(s, "Encounter", res_id)
    return await _page(ctx, s, req, "Encounter", res_id)


async def _require_live(s: GuardedSession, res_type: str, res_id: str) -> None:
    current = await s.read(res_type, res_id)
    if current is None:
        raise FhirError(404, f"{res_type}/{res_id} is not known", "not-found")
    if current.deleted:
        raise FhirError(410, f"{res_type}/{res_id} has been deleted", "deleted")


async def _page(ctx: FhirContext, s: GuardedSession, req: FhirRequest, res_type: str,
                res_id: str) -> FhirResponse:
    path = f"{res_type}/{res_id}/$everything"
    since: int | None = None
    types: list[str] | None = None
    count = ctx.settings.default_page_size
    cursor: int | None = None
    lenient = req.prefer.get("handling") == "lenient"
    for key, value in req.query:
        if key == "_since":
            since = dates.date_range(value)[0]
        elif key == "_type":
            types = type_list(value)
        elif key == "_count":
            count = paging.count_param(value, ctx.settings.max_page_size)
        elif key == "_cursor":
            cursor = paging.cursor_param(value)
        elif key not in _IGNORED and not lenient:
            # start/end (care dates) are not supported yet: refusing beats silently ignoring.
            raise FhirError(400, f"$everything does not support the parameter '{key[:40]}'",
                            "not-supported")
    # The gate restricts every member inside the statement (docs/adr/0006-access-gate.md).
    page = await s.everything(res_type, res_id, types=types, since=since, cursor=cursor,
                              count=count)
    return searchset(req, page, path)
