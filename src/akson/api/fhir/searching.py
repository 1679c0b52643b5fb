"""Search and history interactions (R4 http.html#search, http.html#history)."""

from __future__ import annotations

import os
from urllib.parse import parse_qsl

from akson.access.gate import GuardedSession
from akson.api.fhir import paging, searchparameters
from akson.api.fhir.context import FhirContext
from akson.api.fhir.messages import FhirRequest, FhirResponse
from akson.api.fhir.responses import history_bundle, searchset
from akson.fhir import dates, jsonio
from akson.fhir import search as fhir_search
from akson.fhir.indexing import PATIENT_COMPARTMENT
from akson.fhir.outcome import FhirError, Issue, operation_outcome

#: Parameters that shape the response, not the match, and are fine on any search.
_IGNORED = {"_format", "_pretty"}


async def search_type(ctx: FhirContext, s: GuardedSession, req: FhirRequest, res_type: str, *,
                      required: tuple[tuple[str, str], ...] = ()) -> FhirResponse:
    """GET [base]/[type]?… and POST [base]/[type]/_search (form body, search.html#Introduction).

    `required` pairs are added to every search, and a page token must carry them (a base that
    serves a subset, such as /results/fhir, is not paged with another base's tokens)."""
    return await _search(ctx, s, req, res_type, res_type, None, required)


async def search_compartment(ctx: FhirContext, s: GuardedSession, req: FhirRequest, comp_type: str,
                             comp_id: str, res_type: str) -> FhirResponse:
    """GET [base]/Patient/123/Observation?… (search.html#compartments): a search of
    `res_type` restricted to the resources the compartment's parameters link to its owner."""
    codes = _compartment_params(ctx, comp_type, res_type)
    path = f"{comp_type}/{comp_id}/{res_type}"
    return await _search(ctx, s, req, res_type, path, (comp_type, comp_id, codes))


def _compartment_params(ctx: FhirContext, comp_type: str, res_type: str) -> tuple[str, ...]:
    if comp_type == "Patient":
        wanted = PATIENT_COMPARTMENT.get(res_type, ())
    elif comp_type == "Encounter":
        wanted = ("encounter", "context")
    else:
        raise FhirError(400, f"Compartment {comp_type} is not supported (Patient and Encounter "
                        "are)", "not-supported")
    codes = tuple(c for c in wanted if (p := ctx.registry.get(res_type, c)) is not None
                  and p.type == "reference")
    if not codes:
        raise FhirError(400, f"{res_type} is not in the {comp_type} compartment", "not-supported")
    return codes


async def _search(ctx: FhirContext, s: GuardedSession, req: FhirRequest, res_type: str, path: str,
                  compartment: tuple[str, str, tuple[str, ...]] | None,
                  required: tuple[tuple[str, str], ...] = ()) -> FhirResponse:
    pairs = [(k, v) for k, v in req.query if k not in _IGNORED]
    if req.method == "POST":
        content_type = (req.header("content-type") or "").split(";")[0].strip().lower()
        if req.body and content_type != "application/x-www-form-urlencoded":
            raise FhirError(415, "POST _search takes application/x-www-form-urlencoded",
                            "not-supported")
        pairs += parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True)
        req.query = [*req.query, *parse_qsl(req.body.decode("utf-8", "replace"))]
    keyset = paging.keys(ctx.settings.database_url)
    state = None
    tokens = [v for k, v in pairs if k == "_page"]
    if tokens:
        if len(pairs) != 1:
            raise FhirError(400, "_page cannot be combined with other search parameters")
        state = paging.decode(keyset, tokens[0], path)
        pairs = state.pairs
        if any(p not in pairs for p in required):
            raise FhirError(400, "This page token belongs to another search", "invalid")
    else:
        pairs += required
    lenient = req.prefer.get("handling") == "lenient"
    query = fhir_search.parse(
        res_type, pairs, registry=ctx.registry, lenient=lenient,
        default_count=ctx.settings.default_page_size, max_count=ctx.settings.max_page_size,
        compartment=compartment,
    )
    if state is not None:
        query.cursor, query.cursor_key = state.cursor, state.key
    # Parameters whose reindex has not finished: answered, with a warning (docs/search-parameters.md).
    query.dropped += searchparameters.pending_warnings(ctx.registry, res_type, pairs)
    if query.explain and os.environ.get("AKSON_ENABLE_EXPLAIN") != "1":
        raise FhirError(400, "_explain is for operators (AKSON_ENABLE_EXPLAIN=1)", "forbidden")
    page = await s.search(query, base_url=req.base_url)
    if query.explain:
        return FhirResponse(200, operation_outcome([Issue(page.plan or "", "informational",
                                                          "information")]))
    included = await s.include(query, page.items) if query.includes else None
    warnings = list(query.dropped)
    if included is not None and included.truncated:
        warnings.append(Issue("Only the first included resources are returned: ask for smaller "
                              "pages (_count) or fewer _include/_revinclude", "too-costly",
                              "warning"))
    extra = []
    if warnings:
        outcome = jsonio.dumps(operation_outcome(warnings))
        extra.append(b'{"resource":' + outcome + b',"search":{"mode":"outcome"}}')
    # The token carries every pair, so next pages keep _include, _summary and _elements.
    links = paging.search_links(keyset, req.base_url, path, [p for p in pairs if p[0] != "_page"],
                                query.cursor, query.cursor_key, page)
    return searchset(req, page, path, extra, links=links,
                     included=included.items if included else None, summary=query.summary,
                     elements=query.elements)


async def history(ctx: FhirContext, s: GuardedSession, req: FhirRequest, res_type: str | None = None,
                  res_id: str | None = None) -> FhirResponse:
    """Instance, type or system history with `_since`, `_count` and paging."""
    since = None
    count = ctx.settings.default_page_size
    cursor = None
    for key, value in req.query:
        if key == "_since":
            since = dates.date_range(value)[0]
        elif key == "_count":
            count = paging.count_param(value, ctx.settings.max_page_size, zero=True)
        elif key == "_cursor":
            cursor = paging.cursor_param(value)
        elif key not in _IGNORED and req.prefer.get("handling") != "lenient":
            raise FhirError(400, f"History does not support the parameter '{key}'",
                            "not-supported")
    if res_type and res_id and cursor is None and await s.read(res_type, res_id) is None:
        raise FhirError(404, f"{res_type}/{res_id} is not known", "not-found")
    page = await s.history(res_type, res_id, since=since, count=count, cursor=cursor)
    path = "/".join(p for p in (res_type, res_id, "_history") if p)
    return history_bundle(req, page, path)
