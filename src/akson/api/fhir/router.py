"""Route a FhirRequest to its interaction, in a session of the right kind (R4 http.html summary)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from akson.access.gate import GuardedSession
from akson.access.principal import Principal
from akson.access.token_error import TokenError
from akson.api.fhir import audit_events, bundles, crud, operations, searching
from akson.api.fhir.capability import capability_statement
from akson.api.fhir.context import FhirContext
from akson.api.fhir.messages import FhirRequest, FhirResponse
from akson.api.fhir.operations import expand
from akson.api.fhir.validate_op import validate_op
from akson.fhir.ids import ID_RE
from akson.fhir.outcome import FhirError
from akson.fhir.validation import RESOURCE_TYPES

Handler = Callable[..., Awaitable[FhirResponse]]


def resolve(req: FhirRequest) -> tuple[Handler, tuple[Any, ...], bool]:
    """The handler, its path arguments and whether it writes, or a 404/405 FhirError."""
    path, method = req.path, req.method
    n = len(path)
    if n == 0:
        if method == "POST" and not req.in_bundle:
            return _bundle, (), True
        raise _not_allowed(method, "the base URL")
    head = path[0]
    if head == "_history" and n == 1 and method == "GET":
        return searching.history, (), False
    if head.startswith("$"):
        return operations.resolve_system(req)
    if head == "ValueSet" and n in (2, 3) and path[-1] == "$expand":
        return expand.route(req)
    if head == "AuditEvent":
        return _audit_event(req)
    if head not in RESOURCE_TYPES:
        raise FhirError(404, f"Unknown resource type '{head[:64]}'", "not-supported")
    res_type = head
    if n == 1:
        condition = urlencode(req.query)
        if method == "GET":
            return searching.search_type, (res_type,), False
        if method == "POST":
            return crud.create, (res_type,), True
        if method == "PUT" and condition:
            return crud.conditional_update, (res_type, condition), True
        if method == "DELETE" and condition:
            return crud.conditional_delete, (res_type, condition), True
        raise _not_allowed(method, f"/{res_type}" + (" without search parameters" if not condition else ""))
    second = path[1]
    if n == 2 and second == "_search" and method == "POST":
        return searching.search_type, (res_type,), False
    if n == 2 and second == "_history" and method == "GET":
        return searching.history, (res_type,), False
    if n == 2 and second == "$validate" and method == "POST":
        return validate_op, (res_type,), False
    if n == 2 and second.startswith("$"):
        return operations.resolve_type(req, res_type, second)
    if not ID_RE.fullmatch(second):
        raise FhirError(404, f"'{second[:80]}' is not a valid resource id", "not-found")
    res_id = second
    if n == 2:
        if method in ("GET", "HEAD"):
            return crud.read, (res_type, res_id), False
        if method == "PUT":
            return crud.update, (res_type, res_id), True
        if method == "PATCH":
            return crud.patch, (res_type, res_id), True
        if method == "DELETE":
            return crud.delete, (res_type, res_id), True
        raise _not_allowed(method, f"/{res_type}/[id]")
    if n == 3 and path[2] in RESOURCE_TYPES and method == "GET":  # compartment search
        return searching.search_compartment, (res_type, res_id, path[2]), False
    if n == 3 and path[2] == "_history" and method == "GET":
        return searching.history, (res_type, res_id), False
    if n == 3 and path[2] == "$validate" and method == "POST":
        return validate_op, (res_type, res_id), False
    if n == 3 and path[2].startswith("$"):
        return operations.resolve_instance(req, res_type, res_id, path[2])
    if n == 4 and path[2] == "_history" and method in ("GET", "HEAD"):
        return crud.vread, (res_type, res_id, path[3]), False
    raise FhirError(404, "No FHIR interaction at this URL", "not-found")


def _audit_event(req: FhirRequest) -> tuple[Handler, tuple[Any, ...], bool]:
    """AuditEvents come from the append-only audit log: search and read only."""
    path, method = req.path, req.method
    if method not in ("GET", "HEAD"):
        raise audit_events.refuse_write(method)
    if len(path) == 1:
        return audit_events.search, (), False
    if len(path) == 2 and ID_RE.fullmatch(path[1]):
        return audit_events.read, (path[1],), False
    raise FhirError(404, "No FHIR interaction at this URL", "not-found")


def _not_allowed(method: str, where: str) -> FhirError:
    return FhirError(405, f"{method} is not supported on {where}", "not-supported")


async def _bundle(ctx: FhirContext, s: GuardedSession | None, req: FhirRequest) -> FhirResponse:
    return await bundles.process(ctx, req, dispatch_in_session)


async def dispatch_in_session(ctx: FhirContext, s: GuardedSession, req: FhirRequest
                              ) -> FhirResponse:
    """Run one request inside an existing guarded session (a transaction entry)."""
    handler, args, _ = resolve(req)
    if handler is _bundle:
        raise FhirError(400, "A Bundle entry cannot itself be a transaction or batch", "invalid")
    return await handler(ctx, s, req, *args)


def principal_of(req: FhirRequest) -> Principal:
    """The authenticated caller; a request that reached a handler without one is refused (the
    HTTP app authenticates every request but `metadata`)."""
    if req.principal is None:
        raise TokenError("invalid_token")
    return req.principal


async def handle(ctx: FhirContext, req: FhirRequest) -> FhirResponse:
    """Run one request: metadata needs no session, Bundles open their own; everything else runs
    in a session of the access gate as the request's principal (docs/adr/0006-access-gate.md)."""
    if req.path == ["metadata"] and req.method in ("GET", "HEAD"):
        return FhirResponse(200, capability_statement(ctx.registry, req.base_url))
    principal = principal_of(req)
    handler, args, write = resolve(req)
    if handler is _bundle:
        return await _bundle(ctx, None, req)
    if req.path[:1] == ["AuditEvent"]:
        await ctx.gate.settle()  # this process's newest records, before the session's snapshot
    return await ctx.gate.run(principal, lambda s: handler(ctx, s, req, *args), write=write)
