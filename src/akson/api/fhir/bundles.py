"""Transaction and batch Bundles (https://hl7.org/fhir/R4/http.html#transaction).

A transaction is one database transaction: entries run in the spec's order (DELETE, POST,
PUT/PATCH, GET), `urn:uuid` full URLs and conditional references are resolved first, and any
failing entry rolls everything back. Batch entries run and fail independently.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

from akson.access.gate import GuardedSession
from akson.access.principal import Principal
from akson.access.token_error import TokenError
from akson.api.fhir import crud
from akson.api.fhir.context import FhirContext
from akson.api.fhir.messages import FhirRequest, FhirResponse
from akson.api.fhir.responses import resource_response
from akson.fhir import jsonio
from akson.fhir.outcome import FhirError
from akson.fhir.validation import RESOURCE_TYPES

Dispatch = Callable[[FhirContext, GuardedSession, FhirRequest], Awaitable[FhirResponse]]

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
_STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content", 304: "304 Not Modified"}


async def process(ctx: FhirContext, req: FhirRequest, dispatch: Dispatch) -> FhirResponse:
    """POST [base] with a transaction or batch Bundle."""
    bundle = req.json()
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise FhirError(400, "POST to the base URL takes a Bundle", "invalid", ("resourceType",))
    kind = bundle.get("type")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise FhirError(400, "Bundle.entry must be an array", "structure", ("Bundle.entry",))
    if kind == "transaction":
        return await _transaction(ctx, req, entries, dispatch)
    if kind == "batch":
        return await _batch(ctx, req, entries, dispatch)
    raise FhirError(400, f"Bundle.type must be transaction or batch, not {kind!r}", "invalid",
                    ("Bundle.type",))


def _entry_request(outer: FhirRequest, entry: Any, index: int) -> FhirRequest:
    where = f"Bundle.entry[{index}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
        raise FhirError(400, f"{where} needs a request", "required", (f"{where}.request",))
    request = entry["request"]
    method = request.get("method")
    url = request.get("url")
    if method not in _ORDER or not isinstance(url, str) or not url:
        raise FhirError(400, f"{where}.request needs a method and a url", "required",
                        (f"{where}.request",))
    base = outer.base_url.rstrip("/") + "/"
    if url.startswith(base):
        url = url[len(base):]
    path_part, _, query_part = url.partition("?")
    headers = {"content-type": "application/fhir+json"}
    for field, header in (("ifMatch", "if-match"), ("ifNoneExist", "if-none-exist"),
                          ("ifNoneMatch", "if-none-match"), ("ifModifiedSince", "if-modified-since")):
        if isinstance(request.get(field), str):
            headers[header] = request[field]
    # Entries echo their resource only when asked: a large transaction's response stays small.
    headers["prefer"] = outer.header("prefer") or ("return=minimal" if method != "GET" else "")
    resource = entry.get("resource")
    sub = FhirRequest(
        method=method, path=[unquote(p) for p in path_part.split("/") if p],
        query=parse_qsl(query_part, keep_blank_values=True), headers=headers,
        base_url=outer.base_url, parsed_body=resource, max_json_depth=outer.max_json_depth,
        in_bundle=True, principal=outer.principal,
    )
    if method == "PATCH" and isinstance(resource, dict) and resource.get("resourceType") == "Binary":
        # JSON Patch travels as a Binary (http.html#patch): its data is the patch document.
        try:
            sub.parsed_body = jsonio.loads(base64.b64decode(resource.get("data") or "", validate=True))
        except (binascii.Error, ValueError):
            raise FhirError(400, f"{where}.resource.data is not base64", "invalid") from None
        sub.headers["content-type"] = resource.get("contentType") or "application/json-patch+json"
    elif method in ("POST", "PUT") and resource is None:
        raise FhirError(400, f"{where} needs a resource for {method}", "required",
                        (f"{where}.resource",))
    return sub


async def _transaction(ctx: FhirContext, req: FhirRequest, entries: list, dispatch: Dispatch
                       ) -> FhirResponse:
    subs = [_entry_request(req, e, i) for i, e in enumerate(entries)]
    full_urls = [e.get("fullUrl") if isinstance(e, dict) else None for e in entries]
    _no_duplicate_full_urls(full_urls)
    responses: list[FhirResponse | None] = [None] * len(subs)
    async with ctx.gate.session(_principal(req), write=True, bulk=True) as s:
        id_map = await _assign_ids(ctx, s, req, subs, full_urls)
        for sub in subs:
            if sub.parsed_body is not None:
                await _rewrite_references(ctx, s, req, sub.parsed_body, id_map)
        order = sorted(range(len(subs)), key=lambda i: _ORDER[subs[i].method])
        # Plain creates (ids already assigned) are stored together: same result, one bulk write.
        creates = [i for i in order if _is_plain_create(subs[i])]
        for i in order:
            if i in creates:
                if i == creates[0]:
                    await _create_all(ctx, s, subs, creates, responses)
                continue
            with _blame(i):
                responses[i] = await dispatch(ctx, s, subs[i])
    return FhirResponse(200, _response_bundle("transaction-response", responses))


def _principal(req: FhirRequest) -> Principal:
    if req.principal is None:  # the HTTP app authenticates every request that gets here
        raise TokenError("invalid_token")
    return req.principal


def _is_plain_create(sub: FhirRequest) -> bool:
    return (sub.method == "POST" and len(sub.path) == 1 and sub.assigned_id is not None
            and not sub.header("if-none-exist") and sub.path[0] in RESOURCE_TYPES)


async def _create_all(ctx: FhirContext, s: GuardedSession, subs: list[FhirRequest], indexes: list[int],
                      responses: list[FhirResponse | None]) -> None:
    items = []
    for i in indexes:
        with _blame(i):
            s.check_type_writable(subs[i].path[0])
            resource = crud.checked_resource(
                subs[i], subs[i].path[0], allow_synthetic_ids=ctx.settings.allow_synthetic_ids)
        items.append((subs[i].path[0], str(subs[i].assigned_id), resource))
    for i, stored in zip(indexes, await s.create_many(items), strict=True):
        responses[i] = resource_response(subs[i], stored, 201, location=True)


@contextmanager
def _blame(index: int) -> Iterator[None]:
    """Name the failing entry in the error that rolls the transaction back."""
    try:
        yield
    except FhirError as err:
        where = f"Bundle.entry[{index}]"
        raise FhirError(err.status, f"{where}: {err.diagnostics}", err.code,
                        (where, *err.expression)) from None


async def _batch(ctx: FhirContext, req: FhirRequest, entries: list, dispatch: Dispatch
                 ) -> FhirResponse:
    responses: list[FhirResponse | None] = []
    for i, entry in enumerate(entries):
        try:
            sub = _entry_request(req, entry, i)
            async with ctx.gate.session(_principal(req),
                                        write=sub.method not in ("GET", "HEAD")) as s:
                responses.append(await dispatch(ctx, s, sub))
        except FhirError as err:
            responses.append(FhirResponse(err.status, err.outcome()))
    return FhirResponse(200, _response_bundle("batch-response", responses))


def _no_duplicate_full_urls(full_urls: list[Any]) -> None:
    seen: set[str] = set()
    for i, url in enumerate(full_urls):
        if isinstance(url, str):
            if url in seen:
                raise FhirError(400, f"Bundle.entry[{i}].fullUrl repeats an earlier entry's",
                                "invalid", (f"Bundle.entry[{i}].fullUrl",))
            seen.add(url)


async def _assign_ids(ctx: FhirContext, s: GuardedSession, req: FhirRequest, subs: list[FhirRequest],
                      full_urls: list[Any]) -> dict[str, str]:
    """Map each entry's fullUrl to the `Type/id` it will have once the transaction commits."""
    id_map: dict[str, str] = {}
    for i, sub in enumerate(subs):
        full_url = full_urls[i]
        if sub.method == "POST" and len(sub.path) == 1:
            res_type = sub.path[0]
            condition = sub.header("if-none-exist")
            if condition:
                await s.lock_condition(res_type, condition)
                matches = await crud.find_matches(ctx, s, req, res_type, condition)
                if len(matches) > 1:
                    raise FhirError(412, f"Bundle.entry[{i}]: ifNoneExist matched "
                                    f"{len(matches)} resources", "duplicate")
                if matches:
                    target = f"{res_type}/{matches[0].res_id}"
                    if isinstance(full_url, str):
                        id_map[full_url] = target
                    continue
            sub.assigned_id = str(uuid.uuid4())
            if isinstance(full_url, str):
                id_map[full_url] = f"{res_type}/{sub.assigned_id}"
        elif sub.method == "PUT" and len(sub.path) == 2 and isinstance(full_url, str):
            id_map[full_url] = f"{sub.path[0]}/{sub.path[1]}"
        elif sub.method == "PUT" and len(sub.path) == 1 and sub.query and isinstance(full_url, str):
            # Conditional update: references to its fullUrl must point at the resource the
            # condition resolves to, or at the id it will be created with (http.html#trules).
            res_type = sub.path[0]
            condition = urlencode(sub.query)
            await s.lock_condition(res_type, condition)
            matches = await crud.find_matches(ctx, s, req, res_type, condition)
            if len(matches) == 1:
                id_map[full_url] = f"{res_type}/{matches[0].res_id}"
            elif not matches:
                body_id = sub.parsed_body.get("id") if isinstance(sub.parsed_body, dict) else None
                sub.assigned_id = body_id if isinstance(body_id, str) else str(uuid.uuid4())
                id_map[full_url] = f"{res_type}/{sub.assigned_id}"
            # Several matches: the entry itself fails with 412 when it runs.
    return id_map


async def _rewrite_references(ctx: FhirContext, s: GuardedSession, req: FhirRequest, node: Any,
                              id_map: dict[str, str]) -> None:
    """Point references at their final ids: urn:uuid full URLs and conditional references."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("reference")
            if isinstance(ref, str):
                if ref in id_map:
                    item["reference"] = id_map[ref]
                elif "?" in ref and ref.split("?", 1)[0] in RESOURCE_TYPES:
                    item["reference"] = await _resolve_conditional(ctx, s, req, ref)
            stack.extend(v for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, dict | list))


async def _resolve_conditional(ctx: FhirContext, s: GuardedSession, req: FhirRequest, ref: str) -> str:
    res_type, _, condition = ref.partition("?")
    matches = await crud.find_matches(ctx, s, req, res_type, condition)
    if len(matches) != 1:
        found = "no" if not matches else "more than one"
        raise FhirError(412 if matches else 404,
                        f"Conditional reference to {res_type} matched {found} resource",
                        "not-found" if not matches else "multiple-matches")
    return f"{res_type}/{matches[0].res_id}"


def _response_bundle(kind: str, responses: list[FhirResponse | None]) -> bytes:
    """The *-response Bundle, embedding stored resources as bytes (no re-serialisation)."""
    entries = []
    for resp in responses:
        assert resp is not None
        response: dict[str, Any] = {"status": _STATUS_TEXT.get(resp.status, str(resp.status))}
        for header, field in (("Location", "location"), ("ETag", "etag")):
            if header in resp.headers:
                response[field] = resp.headers[header]
        entry: dict[str, Any] = {}
        body = resp.body
        if isinstance(body, dict):
            if resp.status >= 400:
                response["outcome"] = body
            else:
                entry["resource"] = body
        if "location" in response:
            entry["fullUrl"] = response["location"].split("/_history/")[0]
        entry["response"] = response
        encoded = jsonio.dumps(entry)
        if isinstance(body, bytes) and body:
            encoded = b'{"resource":' + body + b"," + encoded[1:]
        entries.append(encoded)
    return (b'{"resourceType":"Bundle","type":"' + kind.encode() + b'","entry":['
            + b",".join(entries) + b"]}")
