"""Search and history interactions (R4 http.html#search, http.html#history)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from akson.api.fhir.context import FhirContext
from akson.api.fhir.messages import FhirRequest, FhirResponse
from akson.api.fhir.responses import history_bundle, searchset
from akson.fhir import dates, jsonio
from akson.fhir import search as fhir_search
from akson.fhir.outcome import FhirError, operation_outcome
from akson.store.repository import Session

#: Parameters that shape the response, not the match, and are fine on any search.
_IGNORED = {"_format", "_pretty"}


async def search_type(ctx: FhirContext, s: Session, req: FhirRequest, res_type: str
                      ) -> FhirResponse:
    """GET [base]/[type]?… and POST [base]/[type]/_search (form body, search.html#Introduction)."""
    pairs = [(k, v) for k, v in req.query if k not in _IGNORED]
    if req.method == "POST":
        content_type = (req.header("content-type") or "").split(";")[0].strip().lower()
        if req.body and content_type != "application/x-www-form-urlencoded":
            raise FhirError(415, "POST _search takes application/x-www-form-urlencoded",
                            "not-supported")
        pairs += parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True)
        req.query = [*req.query, *parse_qsl(req.body.decode("utf-8", "replace"))]
    lenient = req.prefer.get("handling") == "lenient"
    query = fhir_search.parse(
        res_type, pairs, registry=ctx.registry, lenient=lenient,
        default_count=ctx.settings.default_page_size, max_count=ctx.settings.max_page_size,
    )
    page = await s.search(query, base_url=req.base_url)
    extra = []
    if query.dropped:
        outcome = jsonio.dumps(operation_outcome(query.dropped))
        extra.append(b'{"resource":' + outcome + b',"search":{"mode":"outcome"}}')
    return searchset(req, page, res_type, extra)


async def history(ctx: FhirContext, s: Session, req: FhirRequest, res_type: str | None = None,
                  res_id: str | None = None) -> FhirResponse:
    """Instance, type or system history with `_since`, `_count` and paging."""
    since = None
    count = ctx.settings.default_page_size
    cursor = None
    for key, value in req.query:
        if key == "_since":
            since = dates.date_range(value)[0]
        elif key == "_count":
            if not value.isdigit():
                raise FhirError(400, "_count must be a non-negative integer")
            count = min(int(value), ctx.settings.max_page_size)
        elif key == "_cursor":
            if not value.isdigit():
                raise FhirError(400, "_cursor is not a cursor this server issued")
            cursor = int(value)
        elif key not in _IGNORED and req.prefer.get("handling") != "lenient":
            raise FhirError(400, f"History does not support the parameter '{key}'",
                            "not-supported")
    if res_type and res_id and cursor is None and await s.read(res_type, res_id) is None:
        raise FhirError(404, f"{res_type}/{res_id} is not known", "not-found")
    page = await s.history(res_type, res_id, since=since, count=count, cursor=cursor)
    path = "/".join(p for p in (res_type, res_id, "_history") if p)
    return history_bundle(req, page, path)
