"""Parameters R4 defines as the union of two others: their index rows are copied, not extracted.

`Observation.combo-code` is `Observation.code | Observation.component.code`, so its rows are
the rows of `code` and of `component-code` under its own name; likewise the other `combo-*`
parameters (search.html#combining, R4 Observation search parameters). Indexing renames those
rows instead of evaluating the same paths again, which was a fifth of the work of indexing an
Observation; the rows stored are the same (tests/fhir/test_unions.py compares them).

Only while the registry holds R4's own definitions of every parameter named here: a
SearchParameter stored on the server that redefines one of them turns copying off, and each
is extracted from its own expression again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from akson.fhir.searchparams import SearchParamRegistry

#: Per type: parameter → the two parameters whose rows are its rows.
UNIONS: Mapping[str, Mapping[str, tuple[str, str]]] = {
    "Observation": {
        "combo-code": ("code", "component-code"),
        "combo-data-absent-reason": ("data-absent-reason", "component-data-absent-reason"),
        "combo-value-concept": ("value-concept", "component-value-concept"),
        "combo-value-quantity": ("value-quantity", "component-value-quantity"),
        "combo-code-value-concept": ("code-value-concept", "component-code-value-concept"),
        "combo-code-value-quantity": ("code-value-quantity", "component-code-value-quantity"),
    },
}

_CACHE: dict[tuple[int, int, str], dict[str, tuple[str, ...]]] = {}


def copied_from(registry: SearchParamRegistry, res_type: str) -> dict[str, tuple[str, ...]]:
    """Source parameter → the union parameters its rows are copied to, for `res_type`; empty
    unless the registry holds R4's definitions of all of them (the shipped objects)."""
    key = (id(registry), registry.version, res_type)
    found = _CACHE.get(key)
    if found is None:
        found = {}
        unions = UNIONS.get(res_type, {})
        default = SearchParamRegistry.default()
        codes = {*unions, *(c for pair in unions.values() for c in pair)}
        if codes and all((p := registry.get(res_type, c)) is not None
                         and p is default.get(res_type, c) for c in codes):
            for union, sources in unions.items():
                for source in sources:
                    found.setdefault(source, ())
                    found[source] += (union,)
        _CACHE[key] = found
    return found


def copied(registry: SearchParamRegistry, res_type: str) -> set[str]:
    """The union parameters of `res_type` whose rows are copied (and so not extracted)."""
    return {union for unions in copied_from(registry, res_type).values() for union in unions}


def copies(rows: Iterable[tuple[Any, ...]], by_source: Mapping[str, tuple[str, ...]]
           ) -> list[tuple[Any, ...]]:
    """The rows (parameter code first) of the union parameters, from their sources' rows."""
    return [(union, *row[1:]) for row in rows for union in by_source.get(row[0], ())]
