"""Build FHIR responses from stored resources: headers, Prefer handling, Bundles as bytes.

Stored content is already the JSON we serve, so Bundles are assembled from the stored bytes
rather than parsed and serialised again.
"""

from __future__ import annotations

from urllib.parse import urlencode

import orjson

from akson.api.fhir.messages import FhirRequest, FhirResponse, http_date
from akson.fhir import jsonio, shaping
from akson.fhir.outcome import Issue, operation_outcome
from akson.store.repository import Page, Stored


def resource_response(
    req: FhirRequest, stored: Stored, status: int = 200, *, location: bool = False
) -> FhirResponse:
    """A response for one stored version honouring `Prefer: return=` (http.html#ops)."""
    headers = {"ETag": stored.etag, "Last-Modified": http_date(stored.last_updated)}
    if location:
        headers["Location"] = version_url(req.base_url, stored)
    # `Prefer: return=` is about writes (http.html#ops); a read always returns the resource, also
    # as a GET entry of a transaction that asked for minimal write responses.
    prefer = "representation" if req.method in ("GET", "HEAD") else \
        req.prefer.get("return", "representation")
    body: bytes | dict | None = stored.content
    if prefer == "minimal":
        body = None
    elif prefer == "operationoutcome":
        body = operation_outcome([Issue(f"{stored.res_type}/{stored.res_id} version "
                                        f"{stored.version} stored", "informational",
                                        "information")])
    return FhirResponse(status, body, headers, resource=stored.content)


def version_url(base_url: str, stored: Stored) -> str:
    return f"{base_url}/{stored.res_type}/{stored.res_id}/_history/{stored.version}"


def _dump(value: object) -> bytes:
    return orjson.dumps(value)


def shaped(stored: Stored, summary: str | None = None, elements: tuple[str, ...] = ()
           ) -> bytes:
    """The resource's JSON, subset for `_summary` / `_elements` (search.html#summary,
    #elements); re-serialised only when a subset is asked for, else the stored bytes."""
    if stored.content is None or not shaping.is_shaping(summary, elements):
        return stored.content or b"{}"
    doc = shaping.shape(jsonio.loads(stored.content), summary=summary, elements=elements)
    return jsonio.dumps(doc)


def searchset(req: FhirRequest, page: Page, path: str, extra_entries: list[bytes] | None = None,
              *, links: list[dict] | None = None, included: list[Stored] | None = None,
              summary: str | None = None, elements: tuple[str, ...] = ()) -> FhirResponse:
    """A searchset Bundle; `links` from `akson.api.fhir.paging` (sealed page tokens), else
    self/next/previous links carrying our keyset cursor.

    `included` are added with `search.mode = include` after the matches
    (https://hl7.org/fhir/R4/search.html#include); they are not counted in `total`.
    `summary` applies to every entry, `elements` to the matches only: its names are
    the searched type's (https://hl7.org/fhir/R4/search.html#elements).
    """
    if links is None:
        params = [(k, v) for k, v in req.query if k not in ("_cursor",)]
        links = [_link("self", req.base_url, path, params)]
        if page.next_cursor is not None:
            links.append(_link("next", req.base_url, path,
                               [*params, ("_cursor", str(page.next_cursor))]))
        if page.prev_cursor is not None:
            links.append(_link("previous", req.base_url, path,
                               [*params, ("_cursor", str(page.prev_cursor))]))
    entries = [
        b'{"fullUrl":' + _dump(f"{req.base_url}/{s.res_type}/{s.res_id}") + b',"resource":'
        + shaped(s, summary, elements) + b',"search":{"mode":"match"}}'
        for s in page.items
    ]
    entries += [
        b'{"fullUrl":' + _dump(f"{req.base_url}/{s.res_type}/{s.res_id}") + b',"resource":'
        + shaped(s, summary) + b',"search":{"mode":"include"}}'
        for s in included or ()
    ]
    entries += extra_entries or []
    return FhirResponse(200, _bundle("searchset", page.total, links, entries))


def history_bundle(req: FhirRequest, page: Page, path: str) -> FhirResponse:
    """A history Bundle (http.html#history): newest first, deletions without a resource."""
    params = [(k, v) for k, v in req.query if k != "_cursor"]
    links = [_link("self", req.base_url, path, params)]
    if page.next_cursor is not None:
        links.append(_link("next", req.base_url, path, [*params, ("_cursor", str(page.next_cursor))]))
    entries = []
    for s in page.items:
        url = f"{s.res_type}/{s.res_id}"
        method = "DELETE" if s.deleted else ("POST" if s.method == "POST" else "PUT")
        request = {"method": method, "url": url if method != "POST" else s.res_type}
        response = {"status": "204" if s.deleted else ("201" if s.version == 1 else "200"),
                    "etag": s.etag, "lastModified": _instant(s.last_updated)}
        entry = b'{"fullUrl":' + _dump(f"{req.base_url}/{url}")
        if s.content is not None:
            entry += b',"resource":' + s.content
        entry += b',"request":' + _dump(request) + b',"response":' + _dump(response) + b"}"
        entries.append(entry)
    return FhirResponse(200, _bundle("history", page.total, links, entries))


def _instant(us: int) -> str:
    from akson.fhir.dates import to_instant

    return to_instant(us)


def _link(relation: str, base_url: str, path: str, params: list[tuple[str, str]]) -> dict:
    url = f"{base_url}/{path}" if path else base_url
    if params:
        url += "?" + urlencode(params)
    return {"relation": relation, "url": url}


def _bundle(kind: str, total: int | None, links: list[dict], entries: list[bytes]) -> bytes:
    head = b'{"resourceType":"Bundle","type":"' + kind.encode() + b'"'
    if total is not None:
        head += b',"total":' + str(total).encode()
    head += b',"link":' + _dump(links)
    if entries:
        head += b',"entry":[' + b",".join(entries) + b"]"
    return head + b"}"
