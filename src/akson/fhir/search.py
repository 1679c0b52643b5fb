"""Parse FHIR search parameters into a typed query (R4 search.html), without any storage.

The parse is strict: an unknown parameter, an unsupported modifier or a malformed value is a 400
naming the parameter, unless the client asked for `Prefer: handling=lenient`
(https://hl7.org/fhir/R4/search.html#errors), in which case it is dropped and reported.

Besides plain `name[:modifier]=v1,v2` clauses the query holds chains (`subject:Patient.name=x`,
search.html#chaining), reverse chains (`_has:Observation:patient:code=x`, search.html#has),
composites (`code-value-quantity=loinc|1$gt5`, search.html#composite), `_sort`
(search.html#sort), `_total` (search.html#total), `_include` / `_revinclude` with `:iterate`
(search.html#include) and `_summary` / `_elements` (search.html#summary, #elements). It also
extracts the few index rows the generic indexer does not write (`extra_index_rows`): token texts
for `:text`, identifiers of references for `:identifier` and composite tuples — pure functions of
the resource, like indexing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from akson.fhir import dates, shaping, unions
from akson.fhir.indexing import IndexRows, canonical_quantity, extract
from akson.fhir.outcome import FhirError, Issue
from akson.fhir.pairs import pair_rows
from akson.fhir.searchparams import SearchParam, SearchParamRegistry
from akson.fhir.text import normalize
from akson.fhir.validation import RESOURCE_TYPES

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
#: Result parameters this server understands (search.html#return); all others are errors.
RESULT_PARAMS = frozenset({"_count", "_cursor", "_total", "_format", "_pretty", "_sort",
                           "_explain", "_include", "_revinclude", "_summary", "_elements"})
#: Modifiers each parameter type supports here; anything else is refused, not ignored.
MODIFIERS: dict[str, frozenset[str]] = {
    "token": frozenset({"", "not", "missing", "text", "of-type", "in", "not-in"}),
    "string": frozenset({"", "exact", "contains", "missing"}),
    "date": frozenset({"", "missing"}),
    "reference": frozenset({"", "missing", "identifier"}),  # plus :[type], checked separately
    "number": frozenset({"", "missing"}),
    "quantity": frozenset({"", "missing"}),
    "uri": frozenset({"", "missing", "below", "above"}),
    "composite": frozenset({"", "missing"}),
}
#: Composite parameters are indexed when the first component is a token and the second one of
#: these types (all R4 composites but the three-part ones and `Group.characteristic-reference`).
COMPOSITE_SECOND = frozenset({"token", "quantity", "date", "string"})
#: Longest chain accepted (search.html#chaining leaves the depth to the server).
MAX_CHAIN = 4


@dataclass(frozen=True)
class Value:
    """One alternative of an OR list, with its comparison prefix (`eq` when none was given)."""

    raw: str
    prefix: str = "eq"
    #: Composite values: the value of each component after the first, split on `$`.
    parts: tuple[Value, ...] = ()


@dataclass(frozen=True)
class Chain:
    """`ref[:Type].rest=…`: the reference parameter and, per target type, the clause on it."""

    param: SearchParam
    targets: tuple[tuple[str, Clause], ...]


@dataclass(frozen=True)
class Has:
    """`_has:Type:ref:rest=…`: resources of `res_type` whose `param` points here match `inner`."""

    res_type: str
    param: SearchParam
    inner: Clause


@dataclass(frozen=True)
class Clause:
    """One `name[:modifier]=v1,v2` parameter: the values are ORed; clauses are ANDed.

    `type` is the parameter type, or `chain` / `has` / `compartment` for those forms (then the
    `chain`, `has` or `codes` field holds the detail).
    """

    name: str
    type: str
    modifier: str
    values: tuple[Value, ...]
    param: SearchParam | None = None  # None for _id / _lastUpdated (resource columns)
    chain: Chain | None = None
    has: Has | None = None
    #: Compartment clauses: the reference parameters linking a resource to the compartment.
    codes: tuple[str, ...] = ()
    #: Composite clauses: the type of each component (the first is always `token`).
    component_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class SortKey:
    """One `_sort` key (search.html#sort): `-name` sorts descending."""

    name: str
    type: str  # a parameter type, or `id` / `lastUpdated` for the resource columns
    descending: bool


@dataclass(frozen=True)
class Include:
    """One `_include` / `_revinclude` (search.html#include): `source:param[:target]`.

    `source` is the type holding the reference parameter `param` (None with a bare `*`: any
    type); `param` None is `*`, every reference parameter; `target` narrows the referenced
    type. A reverse include adds `source` resources whose `param` points at a result.
    """

    source: str | None
    param: str | None
    target: str | None = None
    reverse: bool = False
    iterate: bool = False


@dataclass
class SearchQuery:
    """A parsed search over one resource type (or all types when `resource_type` is None)."""

    resource_type: str | None
    clauses: list[Clause] = field(default_factory=list)
    count: int = 50
    #: Keyset position: the pk of the last row seen (negative: page backwards from -cursor).
    cursor: int | None = None
    #: With `_sort`: the sort-key values of that row, so the next page starts right after it.
    cursor_key: tuple[Any, ...] | None = None
    total: str = "auto"  # none | estimate | accurate | auto (ours: exact when it is free)
    sort: list[SortKey] = field(default_factory=list)
    explain: bool = False
    includes: list[Include] = field(default_factory=list)
    summary: str | None = None  # true | text | data | count | false (search.html#summary)
    elements: tuple[str, ...] = ()  # search.html#elements
    dropped: list[Issue] = field(default_factory=list)  # lenient mode: what was ignored


def type_list(value: str) -> list[str]:
    """A `_type` value (comma-separated R4 resource types), as `$everything` and `$export` take
    it; 400 naming unknown types, or when it names none."""
    types = [t.strip() for t in value.split(",") if t.strip()]
    unknown = [t for t in types if t not in RESOURCE_TYPES]
    if unknown or not types:
        raise FhirError(400, f"_type names unknown resource types: {unknown[:5]}"
                        if unknown else "_type is empty")
    return types


def split_or(raw: str, sep: str = ",") -> list[str]:
    """Split a value on unescaped `sep`; `\\,` is a literal comma (search.html#escaping).

    Escapes of the other separators (`\\$`, `\\|`) are kept for the later split on them.
    """
    if "\\" not in raw:  # the common case: nothing escaped
        return raw.split(sep)
    parts: list[str] = []
    current: list[str] = []
    chars = iter(raw)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            if nxt == sep or (nxt == "\\" and sep == ","):
                current.append(nxt)
            else:
                current.append(ch + nxt)
        elif ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _unescape(raw: str) -> str:
    return raw.replace("\\$", "$").replace("\\|", "|") if "\\" in raw else raw


def parse(
    resource_type: str | None,
    params: Iterable[tuple[str, str]],
    *,
    registry: SearchParamRegistry,
    lenient: bool = False,
    default_count: int = 50,
    max_count: int = 1000,
    compartment: tuple[str, str, tuple[str, ...]] | None = None,
) -> SearchQuery:
    """Turn query pairs into a SearchQuery; raise FhirError(400) on anything not understood.

    `compartment` = (compartment type, id, linking parameters) restricts the search to that
    compartment (search.html#compartments, e.g. `GET /Patient/123/Observation`).
    """
    query = SearchQuery(resource_type, count=default_count)
    if compartment is not None:
        ctype, cid, codes = compartment
        query.clauses.append(Clause("_compartment", "compartment", "",
                                    (Value(f"{ctype}/{cid}"),), codes=codes))
    for name, raw in params:
        try:
            _parse_one(query, name, raw, registry, max_count)
        except FhirError as err:
            if not lenient or err.status != 400:
                raise
            query.dropped.append(Issue(f"Ignored: {err.diagnostics}", err.code, "warning"))
    _finish_result_params(query, lenient)
    return query


def _finish_result_params(query: SearchQuery, lenient: bool) -> None:
    """Checks across parameters, once all are read (their order in the URL does not matter)."""
    if query.elements and query.summary not in (None, "false"):
        err = FhirError(400, "_summary and _elements cannot be combined (search.html#elements)")
        if not lenient:
            raise err
        query.dropped.append(Issue(f"Ignored _elements: {err.diagnostics}", err.code, "warning"))
        query.elements = ()
    if query.summary == "count":
        # search.html#summary: count is the total alone, so no page and an exact count.
        query.count = 0
        if query.total in ("auto", "none"):
            query.total = "accurate"


def _parse_one(
    query: SearchQuery, name: str, raw: str, registry: SearchParamRegistry, max_count: int
) -> None:
    base = name.partition(":")[0]
    if base in RESULT_PARAMS:
        _result_param(query, name, raw, registry, max_count)
        return
    query.clauses.append(_parse_clause(query.resource_type, name, raw, registry, 0))


def _parse_clause(res_type: str | None, name: str, raw: str, registry: SearchParamRegistry,
                  depth: int) -> Clause:
    """One search clause on `res_type`, possibly a chain or `_has` (recursively)."""
    if depth > MAX_CHAIN:
        raise FhirError(400, f"Search parameter '{name[:200]}' chains deeper than {MAX_CHAIN}",
                        "not-supported")
    if name.startswith("_has:"):
        return _parse_has(res_type, name, raw, registry, depth)
    head, dot, rest = name.partition(".")
    base, _, modifier = head.partition(":")
    if base == "_id" and not dot:
        return _clause(base, "token", modifier, raw, None, allowed=frozenset({"", "not"}))
    if base == "_lastUpdated" and not dot:
        return _clause(base, "date", modifier, raw, None)
    if res_type is None:
        raise FhirError(400, f"Search parameter '{base}' is not supported across all types")
    param = registry.get(res_type, base)
    if param is None:
        raise FhirError(400, f"Unknown search parameter '{base}' for {res_type}",
                        "not-supported")
    if dot:
        return _parse_chain(res_type, name, param, modifier, rest, raw, registry, depth)
    if param.type == "composite":
        return _composite(name, modifier, raw, param, registry)
    return _clause(base, param.type, modifier, raw, param)


def _parse_chain(res_type: str, name: str, param: SearchParam, modifier: str, rest: str,
                 raw: str, registry: SearchParamRegistry, depth: int) -> Clause:
    """search.html#chaining: every target type that has the next parameter is searched."""
    if param.type != "reference":
        raise FhirError(400, f"Search parameter '{param.code}' of {res_type} is not a "
                        "reference and cannot be chained", "not-supported")
    if modifier and not _is_type_modifier(modifier, param):
        raise FhirError(400, f"Modifier ':{modifier}' cannot be chained on '{param.code}'",
                        "not-supported")
    candidates = (modifier,) if modifier else param.target
    next_code = rest.partition(".")[0].partition(":")[0]
    targets: list[tuple[str, Clause]] = []
    for target in candidates:
        if next_code == "_has" or next_code in ("_id", "_lastUpdated") or \
                registry.get(target, next_code) is not None:
            targets.append((target, _parse_clause(target, rest, raw, registry, depth + 1)))
    if not targets:
        raise FhirError(400, f"Chained parameter '{name[:200]}': no target of '{param.code}' "
                        f"has a search parameter '{next_code[:100]}'", "not-supported")
    return Clause(name, "chain", modifier, (), param, chain=Chain(param, tuple(targets)))


def _parse_has(res_type: str | None, name: str, raw: str, registry: SearchParamRegistry,
               depth: int) -> Clause:
    """search.html#has: `_has:Observation:patient:code=x`, nestable."""
    parts = name.split(":", 3)
    if len(parts) != 4 or not all(parts[1:]) or res_type is None:
        raise FhirError(400, f"'{name[:200]}' must look like _has:Type:reference:parameter")
    _, other, ref_code, rest = parts
    ref = registry.get(other, ref_code)
    if ref is None or ref.type != "reference":
        raise FhirError(400, f"_has: '{ref_code[:100]}' is not a reference parameter of "
                        f"{other[:64]}", "not-supported")
    if ref.target and res_type not in ref.target:
        raise FhirError(400, f"_has: {other}.{ref_code} never refers to {res_type}",
                        "not-supported")
    inner = _parse_clause(other, rest, raw, registry, depth + 1)
    return Clause(name, "has", "", (), ref, has=Has(other, ref, inner))


def _composite(name: str, modifier: str, raw: str, param: SearchParam,
               registry: SearchParamRegistry) -> Clause:
    types = component_types(param, registry)
    if types is None:
        raise FhirError(400, f"Composite parameter '{param.code}' is not supported",
                        "not-supported")
    if modifier not in MODIFIERS["composite"]:
        raise FhirError(400, f"Modifier ':{modifier}' is not supported for '{param.code}'",
                        "not-supported")
    if modifier == "missing":
        return _clause(param.code, "composite", modifier, raw, param)
    values: list[Value] = []
    for alt in split_or(raw):
        pieces = split_or(alt, "$")
        if len(pieces) != len(types) or not all(pieces):
            raise FhirError(400, f"'{param.code}' needs {len(types)} values separated by $")
        first = _value("token", pieces[0], param.code)
        rest = tuple(_value(t, p, param.code) for t, p in zip(types[1:], pieces[1:], strict=True))
        values.append(Value(first.raw, first.prefix, rest))
    return Clause(name, "composite", "", tuple(values), param, component_types=types)


def component_types(param: SearchParam, registry: SearchParamRegistry) -> tuple[str, ...] | None:
    """The component types of a composite this server indexes, or None (not supported)."""
    types: list[str] = []
    for definition, _ in param.components:
        comp = _by_url(registry, definition)
        if comp is None:
            return None
        types.append(comp.type)
    if len(types) != 2 or types[0] != "token" or types[1] not in COMPOSITE_SECOND:
        return None
    return tuple(types)


_URL_CACHE: dict[tuple[int, int, str], SearchParam | None] = {}


def _by_url(registry: SearchParamRegistry, url: str) -> SearchParam | None:
    key = (id(registry), registry.version, url)
    if key not in _URL_CACHE:
        _URL_CACHE[key] = next((p for p in registry if p.url == url), None)
    return _URL_CACHE[key]


def _result_param(query: SearchQuery, name: str, raw: str, registry: SearchParamRegistry,
                  max_count: int) -> None:
    if name == "_count":
        if not (raw.isascii() and raw.isdigit()):
            raise FhirError(400, "_count must be a non-negative integer")
        query.count = min(int(raw), max_count)
    elif name == "_cursor":
        if not (raw.lstrip("-").isascii() and raw.lstrip("-").isdigit()) or len(raw) > 19:
            raise FhirError(400, "_cursor is not a cursor this server issued")
        query.cursor = int(raw)
    elif name == "_total":
        if raw not in ("none", "estimate", "accurate"):
            raise FhirError(400, "_total must be none, estimate or accurate")
        query.total = raw
    elif name == "_sort":
        query.sort = [_sort_key(query.resource_type, key, registry) for key in raw.split(",")]
    elif name in ("_include", "_revinclude", "_include:iterate", "_revinclude:iterate"):
        base, _, iterate = name.partition(":")
        query.includes += [_include(query.resource_type, v, base == "_revinclude", bool(iterate),
                                    registry) for v in raw.split(",")]
    elif name == "_summary":
        query.summary = shaping.summary_mode(raw)
    elif name == "_elements":
        query.elements = shaping.element_names(query.resource_type, raw)
    elif name == "_explain":
        if raw not in ("true", "false"):
            raise FhirError(400, "_explain must be true or false")
        query.explain = raw == "true"
    elif name not in ("_format", "_pretty"):
        raise FhirError(400, f"Modifiers are not allowed on '{name.partition(':')[0]}'")
    # _format and _pretty are handled by the HTTP layer.


def _include(res_type: str | None, raw: str, reverse: bool, iterate: bool,
             registry: SearchParamRegistry) -> Include:
    """`Type:param[:targetType]` or `*` (search.html#include); anything else is a 400.

    Without `:iterate` an `_include` starts from the searched type, and a `_revinclude` must
    be able to point at it, so a typo cannot silently include nothing.
    """
    what = "_revinclude" if reverse else "_include"
    if raw == "*":
        return Include(None, None, None, reverse, iterate)
    parts = raw.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise FhirError(400, f"{what} '{raw[:200]}' must look like Type:parameter[:targetType]")
    source, code, target = parts[0], parts[1], parts[2] if len(parts) == 3 else None
    if not reverse and not iterate and res_type and source != res_type:
        raise FhirError(400, f"{what} '{raw[:200]}' does not start from {res_type} (use "
                        f"{what}:iterate to follow included resources)", "not-supported")
    if code == "*":
        if source not in registry.resource_types or target is not None:
            raise FhirError(400, f"{what} '{raw[:200]}': unknown resource type", "not-supported")
        return Include(source, None, None, reverse, iterate)
    param = registry.get(source, code)
    if param is None or param.type != "reference":
        raise FhirError(400, f"{what}: '{code[:100]}' is not a reference parameter of "
                        f"{source[:64]}", "not-supported")
    if target is not None and param.target and target not in param.target:
        raise FhirError(400, f"{what}: {source}:{code} never refers to {target[:64]}",
                        "not-supported")
    if reverse and not iterate and res_type and (
            (target is not None and target != res_type)
            or (param.target and res_type not in param.target)):
        raise FhirError(400, f"{what}: {source}:{code} never refers to {res_type}",
                        "not-supported")
    return Include(source, code, target, reverse, iterate)


def _sort_key(res_type: str | None, key: str, registry: SearchParamRegistry) -> SortKey:
    descending = key.startswith("-")
    code = key[1:] if descending else key
    if code == "_id":
        return SortKey(code, "id", descending)
    if code == "_lastUpdated":
        return SortKey(code, "lastUpdated", descending)
    param = registry.get(res_type, code) if res_type and code else None
    if param is None or param.type not in MODIFIERS or param.type == "composite":
        raise FhirError(400, f"_sort: '{code[:100]}' is not a sortable parameter"
                        + (f" of {res_type}" if res_type else ""), "not-supported")
    return SortKey(code, param.type, descending)


def _clause(name: str, ptype: str, modifier: str, raw: str, param: SearchParam | None,
            allowed: frozenset[str] | None = None) -> Clause:
    allowed = allowed if allowed is not None else MODIFIERS.get(ptype)
    if allowed is None:
        raise FhirError(400, f"Search parameter '{name}' of type {ptype} is not supported",
                        "not-supported")
    if modifier not in allowed and not (ptype == "reference" and _is_type_modifier(modifier, param)):
        raise FhirError(400, f"Modifier ':{modifier[:60]}' is not supported for '{name}'",
                        "not-supported")
    if modifier == "missing":
        if raw not in ("true", "false"):
            raise FhirError(400, f"'{name}:missing' must be true or false")
        return Clause(name, ptype, modifier, (Value(raw),), param)
    if ptype == "token" and modifier == "text":
        values = tuple(Value(v) for v in split_or(raw))  # free text: no system|code split
    else:
        values = tuple(_value(ptype, v, name) for v in split_or(raw))
    if not raw or any(not v.raw for v in values):
        raise FhirError(400, f"Search parameter '{name}' has an empty value")
    if modifier == "of-type" and any(v.raw.count("|") != 2 for v in values):
        raise FhirError(400, f"'{name}:of-type' takes type-system|type-code|value")
    return Clause(name, ptype, modifier, values, param)


def _is_type_modifier(modifier: str, param: SearchParam | None) -> bool:
    return bool(param) and bool(modifier[:1].isupper()) and (
        not param.target or modifier in param.target  # type: ignore[union-attr]
    )


def _value(ptype: str, raw: str, name: str) -> Value:
    if ptype in ("date", "number", "quantity") and raw[:2] in PREFIXES and len(raw) > 2:
        value = Value(_unescape(raw[2:]), raw[:2])
    else:
        value = Value(raw if ptype == "token" else _unescape(raw))
    if ptype == "date":
        dates.date_range(value.raw)  # raises a 400 naming the bad date
    elif ptype in ("number", "quantity"):
        number = value.raw.split("|", 1)[0]
        try:
            ok = math.isfinite(float(number)) and "_" not in number
        except ValueError:
            ok = False
        if not ok:
            raise FhirError(400, f"'{name}' needs a finite number, got '{number[:40]}'")
    return value


# --- index rows the generic indexer does not write -------------------------------------------


@dataclass
class ExtraRows:
    """Rows for `sp_token_text` (param, folded text), reference identifiers as `sp_token` rows
    (param `code:identifier`, system, value) and `sp_composite` rows (see `composite_row`)."""

    texts: list[tuple[str, str]] = field(default_factory=list)
    ref_identifiers: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    composites: list[tuple[Any, ...]] = field(default_factory=list)


_EXTRA_PLANS: dict[tuple[int, int, str], list[tuple[str, str, Any, Any]]] = {}


def index_rows(resource: dict, registry: SearchParamRegistry) -> tuple[IndexRows, ExtraRows]:
    """Every index row of `resource`: `indexing.extract`'s, `extra_index_rows`' and the paired
    rows derived from them (akson.fhir.pairs), each parameter's values extracted once."""
    seen: dict[str, list[Any]] = {}
    rows = extract(resource, registry, seen)
    extra = extra_index_rows(resource, registry, seen)
    rtype = resource.get("resourceType")
    if rtype.__class__ is str:
        extra.composites += pair_rows(rtype, rows)
    return rows, extra


def extra_index_rows(resource: dict, registry: SearchParamRegistry,
                     seen: dict[str, list[Any]] | None = None) -> ExtraRows:
    """The search-only index rows of `resource` (search.html#token `:text`, #reference
    `:identifier`, #composite), computed with the same compiled extractors as indexing;
    `seen` holds values `indexing.extract` already extracted, by parameter code."""
    out = ExtraRows()
    rtype = resource.get("resourceType")
    if rtype.__class__ is not str:
        return out
    for kind, code, fn, comps in _extra_plan(registry, rtype):
        values = seen[code] if seen is not None and code in seen else fn(resource)
        if not values:
            continue
        if kind == "token":
            _token_texts(code, values, out.texts)
        elif kind == "reference":
            for v in values:
                ident = v.get("identifier") if v.__class__ is dict else None
                if ident.__class__ is dict and ident.get("value").__class__ is str:
                    system = ident.get("system")
                    out.ref_identifiers.append((f"{code}:identifier",
                                                system if system.__class__ is str else None,
                                                ident["value"]))
        else:
            for element in values:
                if element.__class__ is dict:
                    out.composites.extend(_composite_rows(code, element, comps))
    by_source = unions.copied_from(registry, rtype)
    if by_source:
        out.texts += unions.copies(out.texts, by_source)
        out.composites += unions.copies(out.composites, by_source)
    out.texts = list(dict.fromkeys(out.texts))
    out.ref_identifiers = list(dict.fromkeys(out.ref_identifiers))
    out.composites = list(dict.fromkeys(out.composites))
    return out


def _extra_plan(registry: SearchParamRegistry, rtype: str) -> list[tuple[str, str, Any, Any]]:
    from akson.fhir.fhirpath_compile import FhirPathCompileError, compile_expression

    key = (id(registry), registry.version, rtype)
    plan = _EXTRA_PLANS.get(key)
    if plan is not None:
        return plan
    plan = []
    copied = unions.copied(registry, rtype)
    for code, p in registry.for_type(rtype).items():
        fn = p.extractor(rtype)
        if fn is None or code.startswith("_") and p.type != "token" or code in copied:
            continue
        if p.type in ("token", "reference"):
            plan.append((p.type, code, fn, None))
        elif p.type == "composite" and component_types(p, registry) is not None:
            try:
                comps = [compile_expression(expr, rtype) for _, expr in p.components]
            except FhirPathCompileError:
                continue
            types = component_types(p, registry)
            plan.append(("composite", code, fn, list(zip(types or (), comps, strict=True))))
    _EXTRA_PLANS[key] = plan
    return plan


def _token_texts(code: str, values: list[Any], out: list[tuple[str, str]]) -> None:
    for v in values:
        if v.__class__ is not dict:
            continue
        texts = [v.get("text"), v.get("display")]
        texts += [c.get("display") for c in v.get("coding") or () if c.__class__ is dict]
        itype = v.get("type")
        if itype.__class__ is dict:  # Identifier.type.text (search.html#token, :text)
            texts.append(itype.get("text"))
        for t in texts:
            if t.__class__ is str and t:
                out.append((code, normalize(t)))


def _codes(value: Any) -> list[tuple[str | None, str | None]]:
    """(system, code) pairs of a token-ish value (CodeableConcept, Coding, code)."""
    if value.__class__ is str:
        return [(None, value)]
    if value.__class__ is not dict:
        return []
    codings = value.get("coding") if "coding" in value else [value]
    out = []
    for c in codings or ():
        if c.__class__ is dict and (c.get("code").__class__ is str):
            system = c.get("system")
            out.append((system if system.__class__ is str else None, c["code"]))
    return out


def _composite_rows(code: str, element: dict, comps: list[tuple[str, Any]]
                    ) -> list[tuple[Any, ...]]:
    """Rows (param, system, code, v_system, v_code, v_value, v_low, v_high, v_text): the first
    component's coding paired with each value of the second, from the same element."""
    (_, first_fn), (second_type, second_fn) = comps
    firsts = [pair for v in first_fn(element) for pair in _codes(v)]
    seconds: list[tuple[Any, ...]] = []
    for v in second_fn(element):
        if second_type == "token":
            seconds += [(s, c, None, None, None, None) for s, c in _codes(v)]
        elif second_type == "quantity" and isinstance(v, dict) and \
                isinstance(v.get("value"), (int, float)) and not isinstance(v["value"], bool):
            system, unit = v.get("system"), v.get("code")
            system = system if system.__class__ is str else None
            # UCUM quantities get a second row in canonical form, as in sp_quantity
            canonical = canonical_quantity(v["value"], system,
                                           unit if unit.__class__ is str else None)
            if unit.__class__ is not str and system is None:
                unit = v.get("unit")
            seconds.append((system, unit if unit.__class__ is str else None, float(v["value"]),
                            None, None, None))
            if canonical is not None:
                seconds.append((canonical[1], canonical[2], canonical[0], None, None, None))
        elif second_type == "date" and v.__class__ is str:
            try:
                low, high = dates.date_range(v)
            except FhirError:
                continue
            seconds.append((None, None, None, low, high, None))
        elif second_type == "string" and v.__class__ is str and v:
            seconds.append((None, None, None, None, None, normalize(v)))
    return [(code, s, c, *second) for s, c in firsts for second in seconds]

