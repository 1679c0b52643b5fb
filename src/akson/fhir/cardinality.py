"""Does a date search parameter give a resource at most one index row? Read from the R4 schema.

A date parameter whose expression, for one resource type, is a plain path (`Encounter.period`,
`Patient.birthDate`, `(Patient.deceased as dateTime)`) through elements that are not lists,
ending in one that is not a list and cannot be a Timing, yields at most one `sp_date` row per
resource: a choice element holds one value, and akson.fhir.indexing makes at most one row of
it. Two clauses on such a parameter (`date=ge2020&date=lt2021`) then hold for a resource
exactly when its one row meets both, and the search compiler may test them on the same row
(search_sql, docs/adr/0011). A Timing (a row per event, so `Observation.effective` counts), a
list, a function (`where`, `extension(…)`), several paths of the type, or anything not
understood counts as possibly several.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import orjson

from akson.fhir.fhirpath_compile import (
    Binary,
    Call,
    FhirPathCompileError,
    Ident,
    Index,
    Member,
    TypeOp,
    parse,
)

#: Roots that any resource type has.
_ANY = frozenset({"Resource", "DomainResource"})


@cache
def _definitions() -> dict[str, Any]:
    raw = resources.files("akson.fhir").joinpath("data/fhir.schema.json").read_bytes()
    return dict(orjson.loads(raw)["definitions"])


@cache
def single_date(expression: str, res_type: str) -> bool:
    """At most one date index row per `res_type` resource for this expression (see above)."""
    try:
        node = parse(expression)
    except FhirPathCompileError:
        return False
    mine = [b for b in _branches(node) if _root(b) in (res_type, *_ANY, None)]
    if len(mine) != 1:
        return False
    path = _members(mine[0])
    return path is not None and _single(res_type, path)


def _branches(node: Any) -> list[Any]:
    if isinstance(node, Binary) and node.op == "|":
        return _branches(node.left) + _branches(node.right)
    return [node]


def _root(node: Any) -> str | None:
    """The type a branch starts from (through paths, calls, `as`, indexes), if it names one."""
    while True:
        if isinstance(node, Member | Call | Index):
            node = node.base
        elif isinstance(node, TypeOp):
            node = node.operand
        else:
            return node.name if isinstance(node, Ident) else None


def _members(node: Any) -> list[str] | None:
    """The element names after the type of a plain `Type.a.b` path, else None."""
    if isinstance(node, TypeOp) and node.op == "as":  # one value as a type: still one value
        node = node.operand
    names: list[str] = []
    while isinstance(node, Member):
        names.append(node.name)
        node = node.base
    if not isinstance(node, Ident) or not names:
        return None
    return names[::-1]


def _single(type_name: str, path: list[str]) -> bool:
    definitions = _definitions()
    for i, name in enumerate(path):
        props = (definitions.get(type_name) or {}).get("properties") or {}
        choices = [props[name]] if name in props else [
            v for k, v in props.items() if k.startswith(name) and k[len(name):][:1].isupper()]
        if not choices or any(c.get("type") == "array" for c in choices):
            return False
        kinds = {c.get("$ref", "primitive").rsplit("/", 1)[-1] for c in choices}
        if i == len(path) - 1:  # a choice holds one of its types; only a Timing gives several
            return "Timing" not in kinds
        if len(kinds) != 1 or "primitive" in kinds:
            return False
        type_name = kinds.pop()
    return False
