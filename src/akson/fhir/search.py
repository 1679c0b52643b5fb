"""Parse FHIR search parameters into a typed query (R4 search.html), without any storage.

The parse is strict: an unknown parameter, an unsupported modifier or a malformed value is a 400
naming the parameter, unless the client asked for `Prefer: handling=lenient`
(https://hl7.org/fhir/R4/search.html#errors), in which case it is dropped and reported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from akson.fhir import dates
from akson.fhir.outcome import FhirError, Issue
from akson.fhir.searchparams import SearchParam, SearchParamRegistry

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
#: Result parameters this server understands (search.html#return); all others are errors.
RESULT_PARAMS = frozenset({"_count", "_cursor", "_total", "_format", "_pretty"})
#: Modifiers each parameter type supports here; anything else is refused, not ignored.
MODIFIERS: dict[str, frozenset[str]] = {
    "token": frozenset({"", "not", "missing"}),
    "string": frozenset({"", "exact", "contains", "missing"}),
    "date": frozenset({"", "missing"}),
    "reference": frozenset({"", "missing"}),  # plus :[type], checked separately
    "number": frozenset({"", "missing"}),
    "quantity": frozenset({"", "missing"}),
    "uri": frozenset({"", "missing", "below", "above"}),
}


@dataclass(frozen=True)
class Value:
    """One alternative of an OR list, with its comparison prefix (`eq` when none was given)."""

    raw: str
    prefix: str = "eq"


@dataclass(frozen=True)
class Clause:
    """One `name[:modifier]=v1,v2` parameter: the values are ORed; clauses are ANDed."""

    name: str
    type: str
    modifier: str
    values: tuple[Value, ...]
    param: SearchParam | None = None  # None for _id / _lastUpdated (resource columns)


@dataclass
class SearchQuery:
    """A parsed search over one resource type (or all types when `resource_type` is None)."""

    resource_type: str | None
    clauses: list[Clause] = field(default_factory=list)
    count: int = 50
    cursor: int | None = None
    total: str = "auto"  # none | estimate | accurate | auto (ours: exact when it is free)
    dropped: list[Issue] = field(default_factory=list)  # lenient mode: what was ignored


def split_or(raw: str) -> list[str]:
    """Split a value on unescaped commas; `\\,` is a literal comma (search.html#escaping)."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(raw)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, "")
            current.append(nxt if nxt in ",$|\\" else ch + nxt)
        elif ch == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def parse(
    resource_type: str | None,
    params: Iterable[tuple[str, str]],
    *,
    registry: SearchParamRegistry,
    lenient: bool = False,
    default_count: int = 50,
    max_count: int = 1000,
) -> SearchQuery:
    """Turn query pairs into a SearchQuery; raise FhirError(400) on anything not understood."""
    query = SearchQuery(resource_type, count=default_count)
    for name, raw in params:
        try:
            _parse_one(query, name, raw, registry, max_count)
        except FhirError as err:
            if not lenient or err.status != 400:
                raise
            query.dropped.append(Issue(f"Ignored: {err.diagnostics}", err.code, "warning"))
    return query


def _parse_one(
    query: SearchQuery, name: str, raw: str, registry: SearchParamRegistry, max_count: int
) -> None:
    base, _, modifier = name.partition(":")
    if base in RESULT_PARAMS:
        _result_param(query, base, raw, max_count)
        return
    if base == "_id":
        query.clauses.append(_clause(base, "token", modifier, raw, None))
        return
    if base == "_lastUpdated":
        query.clauses.append(_clause(base, "date", modifier, raw, None))
        return
    if query.resource_type is None:
        raise FhirError(400, f"Search parameter '{base}' is not supported across all types")
    param = registry.get(query.resource_type, base)
    if param is None:
        raise FhirError(
            400, f"Unknown search parameter '{base}' for {query.resource_type}", "not-supported"
        )
    query.clauses.append(_clause(base, param.type, modifier, raw, param))


def _result_param(query: SearchQuery, name: str, raw: str, max_count: int) -> None:
    if name == "_count":
        if not raw.isdigit():
            raise FhirError(400, "_count must be a non-negative integer")
        query.count = min(int(raw), max_count)
    elif name == "_cursor":
        if not raw.lstrip("-").isdigit():
            raise FhirError(400, "_cursor is not a cursor this server issued")
        query.cursor = int(raw)
    elif name == "_total":
        if raw not in ("none", "estimate", "accurate"):
            raise FhirError(400, "_total must be none, estimate or accurate")
        query.total = raw
    # _format and _pretty are handled by the HTTP layer.


def _clause(name: str, ptype: str, modifier: str, raw: str, param: SearchParam | None) -> Clause:
    allowed = MODIFIERS.get(ptype)
    if allowed is None:
        raise FhirError(400, f"Search parameter '{name}' of type {ptype} is not supported yet",
                        "not-supported")
    if modifier not in allowed and not (ptype == "reference" and _is_type_modifier(modifier, param)):
        raise FhirError(400, f"Modifier ':{modifier}' is not supported for '{name}'",
                        "not-supported")
    if modifier == "missing":
        if raw not in ("true", "false"):
            raise FhirError(400, f"'{name}:missing' must be true or false")
        return Clause(name, ptype, modifier, (Value(raw),), param)
    values = tuple(_value(ptype, v, name) for v in split_or(raw))
    if not raw or any(not v.raw for v in values):
        raise FhirError(400, f"Search parameter '{name}' has an empty value")
    return Clause(name, ptype, modifier, values, param)


def _is_type_modifier(modifier: str, param: SearchParam | None) -> bool:
    return bool(param) and bool(modifier[:1].isupper()) and (
        not param.target or modifier in param.target  # type: ignore[union-attr]
    )


def _value(ptype: str, raw: str, name: str) -> Value:
    if ptype in ("date", "number", "quantity") and raw[:2] in PREFIXES and len(raw) > 2:
        value = Value(raw[2:], raw[:2])
    else:
        value = Value(raw)
    if ptype == "date":
        dates.date_range(value.raw)  # raises a 400 naming the bad date
    elif ptype in ("number", "quantity"):
        number = value.raw.split("|", 1)[0]
        try:
            float(number)
        except ValueError:
            raise FhirError(400, f"'{name}' needs a number, got '{number[:40]}'") from None
    return value
