"""`/results/fhir`: the FHIR R4 lookup base of the results service (modelled on Pasientens
prøvesvar): read, search and `POST _search` of the result types, through the same gate and audit
as the journal, and the citizen's `$reservation`.

Only resources the results service stored (`meta.tag` origin|results) are served here: every
search gets that `_tag`, and a read of anything else is 404.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from akson.access.gate import GuardedSession
from akson.api.fhir import crud, searching
from akson.api.fhir.context import FhirContext
from akson.api.fhir.messages import FhirRequest, FhirResponse
from akson.api.fhir.router import principal_of
from akson.fhir import jsonio
from akson.fhir.ids import ID_RE
from akson.fhir.outcome import FhirError
from akson.results import model, rights

_TAG = f"{model.ORIGIN_SYSTEM}|{model.ORIGIN_RESULTS}"


async def handle(ctx: FhirContext, req: FhirRequest) -> FhirResponse:
    """Route one request of the results base."""
    path, method = req.path, req.method
    if path == ["metadata"] and method in ("GET", "HEAD"):
        return FhirResponse(200, capability(req.base_url))
    principal = principal_of(req)
    if len(path) == 3 and path[0] == "Patient" and path[2] == "$reservation":
        if method != "POST":
            raise FhirError(405, f"{method} is not supported on $reservation", "not-supported")
        async with ctx.gate.session(principal, write=True) as s:
            return await reservation(s, req, _id(path[1]))
    if not path or path[0] not in model.RESULT_TYPES:
        raise FhirError(404, "The results service serves " + ", ".join(model.RESULT_TYPES),
                        "not-supported")
    res_type = path[0]
    async with ctx.gate.session(principal) as s:
        if (len(path) == 1 and method == "GET") or (path[1:] == ["_search"] and method == "POST"):
            return await searching.search_type(ctx, s, req, res_type,
                                               required=(("_tag", _TAG),))
        if len(path) == 2 and method in ("GET", "HEAD"):
            resp = await crud.read(ctx, s, req, res_type, _id(path[1]))
            if resp.status == 200 and not _is_result(resp.body):
                raise FhirError(404, f"{res_type}/{path[1]} is not a result of this service",
                                "not-found")
            return resp
    raise FhirError(405, f"{method} is not supported here: results are delivered through "
                    "/results/ingest", "not-supported")


def _id(value: str) -> str:
    if not ID_RE.fullmatch(value):
        raise FhirError(404, f"'{value[:80]}' is not a valid resource id", "not-found")
    return value


def _is_result(body: Any) -> bool:
    doc = jsonio.loads(body) if isinstance(body, bytes) else body
    tags = ((doc or {}).get("meta") or {}).get("tag") or []
    return any(t.get("system") == model.ORIGIN_SYSTEM and t.get("code") == model.ORIGIN_RESULTS
               for t in tags)


async def reservation(s: GuardedSession, req: FhirRequest, patient_id: str) -> FhirResponse:
    """`POST [base]/Patient/[id]/$reservation` with Parameters `reserve` (boolean): true makes
    the citizen's reservation against storage (stored results purged), false withdraws it."""
    body = req.json()
    params = {p.get("name"): p for p in body.get("parameter") or [] if isinstance(p, dict)} \
        if isinstance(body, dict) and body.get("resourceType") == "Parameters" else None
    reserve = (params or {}).get("reserve", {}).get("valueBoolean")
    if not isinstance(reserve, bool):
        raise FhirError(400, "$reservation takes Parameters with the boolean 'reserve'",
                        "required", ("Parameters.parameter",))
    now = datetime.now(UTC)
    if reserve:
        purged = await rights.reserve(s, patient_id, now)
    else:
        await rights.withdraw(s, patient_id, now)
        purged = 0
    return FhirResponse(200, {"resourceType": "Parameters", "parameter": [
        {"name": "reserved", "valueBoolean": reserve},
        {"name": "purged", "valueInteger": purged}]})


def capability(base_url: str) -> dict[str, Any]:
    """What the results base supports (https://hl7.org/fhir/R4/capabilitystatement.html)."""
    return {
        "resourceType": "CapabilityStatement", "status": "active", "date": "2026-11-26",
        "publisher": "Akson", "kind": "instance",
        "implementation": {"description": "Akson results lookup (Pasientens prøvesvar model)",
                           "url": base_url},
        "fhirVersion": "4.0.1", "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Results delivered as KITH Svarrapport, HL7 v2 ORU^R01 or FHIR "
                             "Bundles to /results/ingest. Every interaction but this statement "
                             "needs an access token; access follows the journal's policy and is "
                             "audited.",
            "resource": [{"type": t, "interaction": [{"code": "read"}, {"code": "search-type"}]}
                         for t in model.RESULT_TYPES],
            "operation": [{"name": "reservation",
                           "definition": "https://akson.no/fhir/OperationDefinition/reservation"}],
        }],
    }
