"""`ValueSet/$expand`: the codes a stored ValueSet holds, as `:in` sees them (R4
valueset-operation-expand.html).

`GET [base]/ValueSet/[id]/$expand` and `GET [base]/ValueSet/$expand?url=…[&valueSetVersion=…]`
return the ValueSet (without `meta`, `text` and, unless `includeDefinition=true`, `compose`)
with an `expansion` (identifier, timestamp, total, offset, parameter, contains). Parameters:
`url`, `valueSetVersion`, `filter` (text in code or display), `offset`, `count`, `activeOnly`,
`includeDefinition`; others are a 400 unless `Prefer: handling=lenient`. POST takes the same
parameters as a Parameters resource, and also `valueSet`: a ValueSet not stored, expanded
against what is stored (to try a definition before saving it).

A code system that is included whole but not stored here is listed as one abstract entry with
its `system` and no `code`: `:in` matches every code of that system.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from akson.access.gate import GuardedSession
from akson.api.fhir.context import FhirContext
from akson.api.fhir.messages import FhirRequest, FhirResponse
from akson.fhir import dates, jsonio, valuesets
from akson.fhir.ids import ID_RE
from akson.fhir.outcome import FhirError
from akson.fhir.search import Clause, SearchQuery, SortKey, Value
from akson.fhir.text import normalize
from akson.store.repository import Session

Route = tuple[Callable[..., Awaitable[FhirResponse]], tuple[Any, ...], bool]

#: Parameters that shape the response only.
_IGNORED = frozenset({"_format", "_pretty"})
_PARAMS = frozenset({"url", "valueSetVersion", "filter", "offset", "count", "activeOnly",
                     "includeDefinition"})
#: Elements of the stored ValueSet the expansion does not repeat.
_DROPPED = frozenset({"meta", "text", "expansion"})


def route(req: FhirRequest) -> Route:
    """`ValueSet/$expand` (path of 2) or `ValueSet/[id]/$expand` (path of 3); GET or POST."""
    if req.method not in ("GET", "POST"):
        raise FhirError(405, f"{req.method} is not supported on ValueSet $expand (use GET or "
                        "POST)", "not-supported")
    if len(req.path) == 2:
        return expand_type, (), False
    if not ID_RE.fullmatch(req.path[1]):
        raise FhirError(404, f"'{req.path[1][:80]}' is not a valid resource id", "not-found")
    return expand_instance, (req.path[1],), False


async def expand_type(ctx: FhirContext, g: GuardedSession, req: FhirRequest) -> FhirResponse:
    """[base]/ValueSet/$expand?url=…: the stored ValueSet with that canonical url
    (`url|version` or `valueSetVersion` picks a version; else the newest), or the ValueSet
    given in a POSTed `valueSet` parameter."""
    s = _terminology(g)
    params, inline = _params(req)
    url = params.get("url")
    if inline is not None:
        if url:
            raise FhirError(400, "$expand takes 'url' or 'valueSet', not both")
        return await _expand(ctx, s, req, inline, valuesets.Library(), params)
    if not url:
        raise FhirError(400, "ValueSet/$expand needs the parameter 'url' (or 'valueSet', or "
                        "use ValueSet/[id]/$expand)", "required")
    canonical, _, version = url.partition("|")
    version = version or params.get("valueSetVersion") or ""
    library = valuesets.Library()
    library.add("ValueSet", canonical, await _by_url(ctx, s, req, "ValueSet", canonical))
    root = library.resolve("ValueSet", canonical, version or None)
    if root is None:
        raise FhirError(404, f"ValueSet '{url[:200]}'"
                        + (f" version '{version[:40]}'" if version else "")
                        + " is not known to this server", "not-found")
    return await _expand(ctx, s, req, root, library, params)


async def expand_instance(ctx: FhirContext, g: GuardedSession, req: FhirRequest, res_id: str
                          ) -> FhirResponse:
    """[base]/ValueSet/[id]/$expand."""
    s = _terminology(g)
    params, inline = _params(req)
    if inline is not None:
        raise FhirError(400, "ValueSet/[id]/$expand takes no 'valueSet' parameter")
    stored = await s.read("ValueSet", res_id)
    if stored is None:
        raise FhirError(404, f"ValueSet/{res_id} is not known", "not-found")
    if stored.deleted or stored.content is None:
        raise FhirError(410, f"ValueSet/{res_id} has been deleted", "deleted")
    root = jsonio.loads(stored.content)
    return await _expand(ctx, s, req, root, valuesets.Library(), params)


def _terminology(g: GuardedSession) -> Session:
    """ValueSets and CodeSystems hold no personal data: any authenticated caller may expand,
    whatever its resource scopes, so terminology is read outside the access policy."""
    return g.bookkeeping


def _params(req: FhirRequest) -> tuple[dict[str, str], dict | None]:
    """The parameters as text (query, and a POSTed Parameters body), and an inline ValueSet."""
    lenient = req.prefer.get("handling") == "lenient"
    out: dict[str, str] = {}
    pairs, inline = list(req.query), None
    if req.method == "POST" and (req.body or req.parsed_body is not None):
        body_pairs, inline = _body_params(req.json())
        pairs += body_pairs
    for key, value in pairs:
        if key in _PARAMS:
            if key in out:
                raise FhirError(400, f"$expand takes '{key}' once", "invalid")
            out[key] = value
        elif key not in _IGNORED and not lenient:
            raise FhirError(400, f"$expand does not support the parameter '{key[:40]}'",
                            "not-supported")
    return out, inline


def _body_params(body: object) -> tuple[list[tuple[str, str]], dict | None]:
    """A Parameters resource's `parameter`s as text pairs, and its `valueSet` resource
    (https://hl7.org/fhir/R4/parameters.html)."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise FhirError(400, "POST $expand takes a Parameters resource", "invalid")
    pairs: list[tuple[str, str]] = []
    inline: dict | None = None
    for param in body.get("parameter") or ():
        name = param.get("name") if isinstance(param, dict) else None
        if not isinstance(name, str):
            raise FhirError(400, "Every Parameters.parameter needs a name", "invalid")
        if name == "valueSet":
            resource = param.get("resource")
            if not isinstance(resource, dict) or resource.get("resourceType") != "ValueSet" \
                    or inline is not None:
                raise FhirError(400, "$expand takes one 'valueSet' parameter holding a ValueSet "
                                "resource", "invalid")
            inline = resource
            continue
        values = [v for k, v in param.items() if k.startswith("value")]
        value = values[0] if len(values) == 1 else None
        if isinstance(value, bool):
            pairs.append((name, "true" if value else "false"))
        elif isinstance(value, int | str):
            pairs.append((name, str(value)))
        else:
            raise FhirError(400, f"$expand parameter '{name[:40]}' needs one simple value",
                            "invalid")
    return pairs, inline


def _flag(params: dict[str, str], name: str) -> bool:
    value = params.get(name, "false")
    if value not in ("true", "false"):
        raise FhirError(400, f"$expand parameter '{name}' must be true or false")
    return value == "true"


def _number(params: dict[str, str], name: str) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 9:
        raise FhirError(400, f"$expand parameter '{name}' must be a non-negative integer")
    return int(value)


async def _by_url(ctx: FhirContext, s: Session, req: FhirRequest, res_type: str, url: str
                  ) -> list[dict]:
    """The live resources of `res_type` with canonical `url`, newest first (a `valuesets.Fetch`)."""
    query = SearchQuery(res_type, count=valuesets.MAX_VERSIONS, total="none",
                        sort=[SortKey("_lastUpdated", "lastUpdated", True)])
    query.clauses.append(Clause("url", "uri", "", (Value(url),),
                                ctx.registry.get(res_type, "url")))
    page = await s.search(query, base_url=req.base_url)
    return [jsonio.loads(item.content) for item in page.items if item.content]


async def _expand(ctx: FhirContext, s: Session, req: FhirRequest, root: dict,
                  library: valuesets.Library, params: dict[str, str]) -> FhirResponse:
    active_only = _flag(params, "activeOnly")
    with_definition = _flag(params, "includeDefinition")
    offset, count = _number(params, "offset") or 0, _number(params, "count")

    async def fetch(res_type: str, url: str) -> list[dict]:
        return await _by_url(ctx, s, req, res_type, url)

    await valuesets.load(root, fetch, library)
    concepts = valuesets.expand(root, library.resolve)
    if active_only:
        concepts = [c for c in concepts if not c.inactive]
    text = normalize(params.get("filter") or "")
    if text:
        concepts = [c for c in concepts if text in normalize(c.code or "")
                    or text in normalize(c.display or "")]
    page = concepts[offset:] if count is None else concepts[offset:offset + count]
    expansion: dict[str, Any] = {
        "identifier": f"urn:uuid:{uuid.uuid4()}",
        "timestamp": dates.to_instant(dates.now_us()),
        "total": len(concepts),
    }
    if offset or count is not None:
        expansion["offset"] = offset
    used = [_parameter(k, params[k]) for k in ("filter", "offset", "count", "activeOnly",
                                               "includeDefinition") if k in params]
    if used:
        expansion["parameter"] = used
    if page:
        expansion["contains"] = [_entry(c) for c in page]
    body = {k: v for k, v in root.items()
            if k not in _DROPPED and (k != "compose" or with_definition)}
    body["expansion"] = expansion
    return FhirResponse(200, body)


def _parameter(name: str, value: str) -> dict[str, Any]:
    if name in ("offset", "count"):
        return {"name": name, "valueInteger": int(value)}
    if name in ("activeOnly", "includeDefinition"):
        return {"name": name, "valueBoolean": value == "true"}
    return {"name": name, "valueString": value}


def _entry(concept: valuesets.Concept) -> dict[str, Any]:
    """One expansion.contains; a whole code system not stored here is an abstract entry."""
    if concept.code is None:
        return {"system": concept.system, "abstract": True,
                "display": "Every code of this code system (it is not stored on this server, "
                           "so its codes cannot be listed)"}
    out: dict[str, Any] = {"system": concept.system}
    if concept.version:
        out["version"] = concept.version
    if concept.inactive:
        out["inactive"] = True
    out["code"] = concept.code
    if concept.display:
        out["display"] = concept.display
    return out
