"""Instance and type interactions: read, vread, create, update, patch, delete (R4 http.html).

Each handler takes the session it runs in, so the same code serves a lone HTTP request and an
entry of a transaction Bundle.
"""

from __future__ import annotations

import re
from dataclasses import replace
from urllib.parse import parse_qsl

from akson.access.gate import GuardedSession
from akson.api.fhir import searchparameters
from akson.api.fhir.context import FhirContext
from akson.api.fhir.messages import FhirRequest, FhirResponse
from akson.api.fhir.responses import resource_response, shaped
from akson.fhir import patch as fhir_patch
from akson.fhir import search as fhir_search
from akson.fhir import shaping
from akson.fhir.outcome import FhirError, Issue, operation_outcome, unprocessable
from akson.fhir.validation import validate
from akson.store.repository import Stored

_ETAG = re.compile(r'^(?:W/)?"?(\d+)"?$')


# ------------------------------------------------------------------ reads


async def read(ctx: FhirContext, s: GuardedSession, req: FhirRequest, res_type: str, res_id: str
               ) -> FhirResponse:
    """https://hl7.org/fhir/R4/http.html#read — 404 if unknown, 410 if deleted."""
    stored = await s.read(res_type, res_id)
    _must_be_live(stored, res_type, res_id)
    assert stored is not None
    if req.header("if-none-match") == stored.etag:
        return FhirResponse(304, None, {"ETag": stored.etag})
    return resource_response(req, _shaped(req, stored))


def _shaped(req: FhirRequest, stored: Stored) -> Stored:
    """`_summary` / `_elements` on a read (search.html#summary, #elements); the stored bytes
    are served untouched unless a subset is asked for."""
    summary: str | None = None
    elements: tuple[str, ...] = ()
    for key, value in req.query:
        if key == "_summary":
            summary = shaping.summary_mode(value)
            if summary == "count":
                raise FhirError(400, "_summary=count is for searches, not reads")
        elif key == "_elements":
            elements = shaping.element_names(stored.res_type, value)
    if not shaping.is_shaping(summary, elements):
        return stored
    return replace(stored, content=shaped(stored, summary, elements))


async def vread(ctx: FhirContext, s: GuardedSession, req: FhirRequest, res_type: str, res_id: str,
                vid: str) -> FhirResponse:
    """https://hl7.org/fhir/R4/http.html#vread — a deleted version answers 410."""
    if not (vid.isascii() and vid.isdigit()):
        raise FhirError(404, f"{res_type}/{res_id} has no version '{vid[:20]}'", "not-found")
    stored = await s.vread(res_type, res_id, int(vid))
    if stored is None:
        raise FhirError(404, f"{res_type}/{res_id} has no version {vid}", "not-found")
    if stored.deleted:
        raise FhirError(410, f"{res_type}/{res_id} was deleted in version {vid}", "deleted")
    return resource_response(req, stored)


def _must_be_live(stored: Stored | None, res_type: str, res_id: str) -> None:
    if stored is None:
        raise FhirError(404, f"{res_type}/{res_id} is not known", "not-found")
    if stored.deleted:
        raise FhirError(410, f"{res_type}/{res_id} has been deleted", "deleted")


# ----------------------------------------------------------------- writes


def checked_resource(req: FhirRequest, res_type: str, *, allow_synthetic_ids: bool = True) -> dict:
    """The request's resource after structural validation; 400/422 naming what is wrong.

    In production (`allow_synthetic_ids` False) synthetic national ids are refused too.
    """
    body = req.json()
    if not isinstance(body, dict):
        raise FhirError(400, "The body must be a JSON object (a FHIR resource)", "structure")
    if body.get("resourceType") != res_type:
        found = body.get("resourceType")
        raise FhirError(400, f"The body is a {found!r} resource, the URL says {res_type}",
                        "invalid", ("resourceType",))
    issues = validate(body, expected_type=res_type, allow_synthetic_ids=allow_synthetic_ids)
    if issues:
        raise unprocessable(issues)
    return body


async def create(ctx: FhirContext, s: GuardedSession, req: FhirRequest, res_type: str) -> FhirResponse:
    """https://hl7.org/fhir/R4/http.html#create, with `If-None-Exist` (conditional create).

    A body `id` is ignored (the server assigns one), as R4 requires.
    """
    resource = checked_resource(req, res_type, allow_synthetic_ids=ctx.settings.allow_synthetic_ids)
    condition = req.header("if-none-exist")
    if condition:
        await s.lock_condition(res_type, condition)
        matches = await find_matches(ctx, s, req, res_type, condition)
        if len(matches) > 1:
            raise FhirError(412, f"If-None-Exist matched {len(matches)} {res_type} resources",
                            "duplicate")
        if matches:
            # Location names the matched resource, so a transaction-response entry says which
            # resource its ifNoneExist resolved to (http.html#trules).
            return resource_response(req, matches[0], 200, location=True)
    await searchparameters.check(ctx, s, res_type, resource)
    stored = await s.create(res_type, resource, res_id=req.assigned_id)
    await searchparameters.changed(ctx, s.bookkeeping, stored)
    return resource_response(req, stored, 201, location=True)


async def update(ctx: FhirContext, s: GuardedSession, req: FhirRequest, res_type: str, res_id: str
                 ) -> FhirResponse:
    """https://hl7.org/fhir/R4/http.html#update — creates when absent (client-assigned id)."""
    resource = checked_resource(req, res_type, allow_synthetic_ids=ctx.settings.allow_synthetic_ids)
    if resource.get("id") != res_id:
        raise FhirError(400, f"The body's id must equal the id in the URL ({res_id})",
                        "invalid", ("id",))
    await searchparameters.check(ctx, s, res_type, resource, res_id)
    stored, created = await s.update(res_type, res_id, resource, if_match=if_match(req))
    await searchparameters.changed(ctx, s.bookkeeping, stored)
    return resource_response(req, stored, 201 if created else 200, location=created)


async def conditional_update(ctx: FhirContext, s: GuardedSession, req: FhirRequest, res_type: str,
                             condition: str) -> FhirResponse:
    """https://hl7.org/fhir/R4/http.html#cond-update: no match creates, one match updates."""
    resource = checked_resource(req, res_type, allow_synthetic_ids=ctx.settings.allow_synthetic_ids)
    await s.lock_condition(res_type, condition)
    matches = await find_matches(ctx, s, req, res_type, condition)
    if len(matches) > 1:
        raise FhirError(412, f"The condition matched {len(matches)} {res_type} resources",
                        "multiple-matches")
    if not matches:
        body_id = resource.get("id")
        if body_id and await s.read(res_type, body_id) is not None:
            raise FhirError(409, f"{res_type}/{body_id} exists but does not match the condition",
                            "conflict")
        await searchparameters.check(ctx, s, res_type, resource, body_id)
        stored = await s.create(res_type, resource, res_id=body_id or req.assigned_id)
        await searchparameters.changed(ctx, s.bookkeeping, stored)
        return resource_response(req, stored, 201, location=True)
    target = matches[0]
    if resource.get("id") not in (None, target.res_id):
        raise FhirError(400, "The body's id differs from the resource the condition matched",
                        "invalid", ("id",))
    resource = {**resource, "id": target.res_id}
    await searchparameters.check(ctx, s, res_type, resource, target.res_id)
    stored, _ = await s.update(res_type, target.res_id, resource, if_match=if_match(req))
    await searchparameters.changed(ctx, s.bookkeeping, stored)
    # The client named no id, so Location is how it (or a transaction-response) learns which one.
    return resource_response(req, stored, 200, location=True)


async def patch(ctx: FhirContext, s: GuardedSession, req: FhirRequest, res_type: str, res_id: str
                ) -> FhirResponse:
    """https://hl7.org/fhir/R4/http.html#patch — JSON Patch or FHIRPath Patch, then validated."""
    current = await s.read(res_type, res_id, for_update=True)
    _must_be_live(current, res_type, res_id)
    assert current is not None and current.content is not None
    expected = if_match(req)
    if expected is not None and expected != current.version:
        raise FhirError(412, f"{res_type}/{res_id} is at version {current.version}, "
                        f"not {expected}", "conflict")
    content_type = (req.header("content-type") or "").split(";")[0].strip().lower()
    from akson.fhir import jsonio

    patched = fhir_patch.apply_patch(jsonio.loads(current.content), content_type, req.json())
    if patched.get("resourceType") != res_type or patched.get("id") != res_id:
        raise FhirError(422, "A patch may not change resourceType or id", "processing")
    issues = validate(patched, expected_type=res_type)
    if issues:
        raise unprocessable(issues)
    await searchparameters.check(ctx, s, res_type, patched, res_id)
    stored, _ = await s.update(res_type, res_id, patched, if_match=current.version)
    await searchparameters.changed(ctx, s.bookkeeping, stored)
    return resource_response(req, stored, 200)


async def delete(ctx: FhirContext, s: GuardedSession, req: FhirRequest, res_type: str, res_id: str
                 ) -> FhirResponse:
    """https://hl7.org/fhir/R4/http.html#delete — idempotent; history is kept."""
    s.check_type_writable(res_type)
    deleted = await s.delete(res_type, res_id)
    if deleted is not None:
        await searchparameters.changed(ctx, s.bookkeeping, deleted)
    headers = {"ETag": deleted.etag} if deleted else {}
    outcome = operation_outcome([Issue(
        f"{res_type}/{res_id} deleted" if deleted else f"{res_type}/{res_id} was not present",
        "informational", "information")])
    return FhirResponse(200, outcome, headers)


async def conditional_delete(ctx: FhirContext, s: GuardedSession, req: FhirRequest, res_type: str,
                             condition: str) -> FhirResponse:
    """https://hl7.org/fhir/R4/http.html#3.1.0.7.1 — single-match conditional delete."""
    await s.lock_condition(res_type, condition)
    matches = await find_matches(ctx, s, req, res_type, condition)
    if len(matches) > 1:
        raise FhirError(412, f"The condition matched {len(matches)} {res_type} resources",
                        "multiple-matches")
    if not matches:
        return FhirResponse(204)
    return await delete(ctx, s, req, res_type, matches[0].res_id)


# --------------------------------------------------------------- helpers


def if_match(req: FhirRequest) -> int | None:
    raw = req.header("if-match")
    if raw is None:
        return None
    m = _ETAG.match(raw.strip())
    if not m:
        raise FhirError(400, 'If-Match must be an ETag like W/"3"', "invalid")
    return int(m.group(1))


async def find_matches(ctx: FhirContext, s: GuardedSession, req: FhirRequest, res_type: str,
                       condition: str) -> list[Stored]:
    """Resources matching a conditional URL's query (at most two: enough to tell 0/1/many)."""
    pairs = parse_qsl(condition.split("?", 1)[-1], keep_blank_values=True)
    if not pairs:
        raise FhirError(400, "A conditional request needs search parameters", "invalid")
    query = fhir_search.parse(res_type, pairs, registry=ctx.registry)
    query.count = 2
    query.total = "none"
    page = await s.search(query, base_url=req.base_url)
    return page.items
