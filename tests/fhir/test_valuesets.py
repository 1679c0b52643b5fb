"""ValueSet expansion without storage: compose, filters, imports, excludes, cycles and caps
(https://hl7.org/fhir/R4/valueset.html#compose, codesystem-filter-operator.html)."""

from __future__ import annotations

import asyncio

import pytest

from akson.fhir.outcome import FhirError
from akson.fhir.valuesets import Library, expand, expand_valueset, load

ICPC = "http://akson.test/cs/icpc2-like"
FLAT = "http://akson.test/cs/flat"
LOINC = "http://loinc.org"

#: An ICPC-2-like code system: chapters with nested codes, a `component` property, one retired
#: code and one sub-code nested two levels down.
ICPC_CS = {
    "resourceType": "CodeSystem", "url": ICPC, "version": "2", "status": "active",
    "content": "complete", "hierarchyMeaning": "is-a",
    "property": [{"code": "component", "type": "code"},
                 {"code": "status", "uri": "http://hl7.org/fhir/concept-properties#status",
                  "type": "code"}],
    "concept": [
        {"code": "K", "display": "Hjerte og kar", "concept": [
            {"code": "K74", "display": "Angina pectoris",
             "property": [{"code": "component", "valueCode": "7"}]},
            {"code": "K86", "display": "Hypertensjon ukomplisert",
             "property": [{"code": "component", "valueCode": "7"}]},
            {"code": "K87", "display": "Hypertensjon komplisert",
             "property": [{"code": "component", "valueCode": "7"},
                          {"code": "status", "valueCode": "retired"}]},
            {"code": "K01", "display": "Hjertesmerte",
             "property": [{"code": "component", "valueCode": "1"}]},
        ]},
        {"code": "T", "display": "Endokrine, metabolske og ernæring", "concept": [
            {"code": "T89", "display": "Diabetes type 1",
             "property": [{"code": "component", "valueCode": "7"}]},
            {"code": "T90", "display": "Diabetes type 2",
             "property": [{"code": "component", "valueCode": "7"}],
             "concept": [{"code": "T90.1", "display": "Diabetes type 2 med komplikasjoner"}]},
        ]},
    ],
}

#: A flat code system whose hierarchy comes from `parent` and `child` properties (several
#: parents for one code: A21 is below A2 and below B).
FLAT_CS = {
    "resourceType": "CodeSystem", "url": FLAT, "status": "active", "content": "complete",
    "property": [{"code": "parent", "uri": "http://hl7.org/fhir/concept-properties#parent",
                  "type": "code"},
                 {"code": "subs", "uri": "http://hl7.org/fhir/concept-properties#child",
                  "type": "code"},
                 {"code": "inactive", "uri": "http://hl7.org/fhir/concept-properties#inactive",
                  "type": "boolean"}],
    "concept": [
        {"code": "A"},
        {"code": "A1", "property": [{"code": "parent", "valueCode": "A"}]},
        {"code": "A2", "property": [{"code": "parent", "valueCode": "A"}]},
        {"code": "A21", "property": [{"code": "parent", "valueCode": "A2"},
                                     {"code": "parent", "valueCode": "B"}]},
        {"code": "B", "property": [{"code": "subs", "valueCode": "C"}]},
        {"code": "C", "property": [{"code": "inactive", "valueBoolean": True}]},
    ],
}


def _resolver(*resources: dict):
    library = Library()
    grouped: dict[tuple[str, str], list[dict]] = {}
    for r in resources:
        grouped.setdefault((r["resourceType"], r["url"]), []).append(r)
    for (kind, url), found in grouped.items():
        library.add(kind, url, found)
    return library.resolve


def _vs(*include: dict, exclude: tuple[dict, ...] = (), url: str = "http://akson.test/vs/t",
        **compose) -> dict:
    body: dict = {"include": list(include), **compose}
    if exclude:
        body["exclude"] = list(exclude)
    return {"resourceType": "ValueSet", "url": url, "status": "active", "compose": body}


def _codes(vs: dict, *others: dict) -> set[tuple[str, str | None]]:
    pairs = expand_valueset(vs, _resolver(ICPC_CS, FLAT_CS, *others))
    assert len(pairs) == len(set(pairs)), "an expansion lists each code once"
    return set(pairs)


def _icpc(*codes: str) -> set[tuple[str, str | None]]:
    return {(ICPC, c) for c in codes}


def _flat(*codes: str) -> set[tuple[str, str | None]]:
    return {(FLAT, c) for c in codes}


def _f(prop: str, op: str, value: str) -> dict:
    return {"property": prop, "op": op, "value": value}


ALL_ICPC = ("K", "K74", "K86", "K87", "K01", "T", "T89", "T90", "T90.1")

FILTERS: list[tuple[str, list[dict], set[tuple[str, str | None]]]] = [
    # hierarchy from nested concepts
    ("is-a on a chapter", [_f("concept", "is-a", "K")], _icpc("K", "K74", "K86", "K87", "K01")),
    ("is-a two levels", [_f("concept", "is-a", "T")], _icpc("T", "T89", "T90", "T90.1")),
    ("descendent-of", [_f("concept", "descendent-of", "T")], _icpc("T89", "T90", "T90.1")),
    ("is-not-a", [_f("concept", "is-not-a", "K")], _icpc("T", "T89", "T90", "T90.1")),
    ("generalizes", [_f("concept", "generalizes", "T90.1")], _icpc("T90.1", "T90", "T")),
    ("is-a unknown code", [_f("concept", "is-a", "X99")], set()),
    ("is-not-a unknown code", [_f("concept", "is-not-a", "X99")], _icpc(*ALL_ICPC)),
    # properties
    ("= on a property", [_f("component", "=", "1")], _icpc("K01")),
    ("= on the code", [_f("concept", "=", "K86")], _icpc("K86")),
    ("in codes", [_f("concept", "in", "K86, T90,X99")], _icpc("K86", "T90")),
    ("in property values", [_f("component", "in", "1,7")],
     _icpc("K74", "K86", "K87", "K01", "T89", "T90")),
    ("not-in", [_f("component", "not-in", "7")], _icpc("K", "K01", "T", "T90.1")),
    ("regex on the code", [_f("concept", "regex", "K8[67]")], _icpc("K86", "K87")),
    ("regex is a whole match", [_f("concept", "regex", "K8")], set()),
    ("regex on the display", [_f("display", "regex", "Hypertensjon.*")], _icpc("K86", "K87")),
    ("exists true", [_f("component", "exists", "true")],
     _icpc("K74", "K86", "K87", "K01", "T89", "T90")),
    ("exists false", [_f("component", "exists", "false")], _icpc("K", "T", "T90.1")),
    ("= on a standard property", [_f("status", "=", "retired")], _icpc("K87")),
    # several filters in one include are ANDed
    ("filters are ANDed", [_f("concept", "is-a", "K"), _f("component", "=", "7")],
     _icpc("K74", "K86", "K87")),
]


@pytest.mark.parametrize(("why", "filters", "expected"), FILTERS, ids=[c[0] for c in FILTERS])
def test_filter_on_icpc_hierarchy(why, filters, expected):
    assert _codes(_vs({"system": ICPC, "filter": filters})) == expected


PARENT_PROPERTY_FILTERS: list[tuple[list[dict], set[tuple[str, str | None]]]] = [
    ([_f("concept", "is-a", "A")], _flat("A", "A1", "A2", "A21")),
    ([_f("concept", "descendent-of", "A2")], _flat("A21")),
    ([_f("concept", "is-a", "B")], _flat("B", "A21", "C")),  # a second parent; a child property
    ([_f("concept", "generalizes", "A21")], _flat("A21", "A2", "A", "B")),
    ([_f("concept", "is-not-a", "A")], _flat("B", "C")),
    ([_f("parent", "=", "A")], _flat("A1", "A2")),  # the hierarchy as a property
    ([_f("subs", "exists", "true")], _flat("A", "A2", "B")),
]


@pytest.mark.parametrize(("filters", "expected"), PARENT_PROPERTY_FILTERS)
def test_filter_on_parent_and_child_properties(filters, expected):
    assert _codes(_vs({"system": FLAT, "filter": filters})) == expected


def test_concept_list_takes_displays_from_the_stored_code_system():
    vs = _vs({"system": ICPC, "concept": [{"code": "K86"}, {"code": "T90", "display": "DM2"}]})
    got = {(c.code, c.display, c.version) for c in expand(vs, _resolver(ICPC_CS))}
    assert got == {("K86", "Hypertensjon ukomplisert", "2"), ("T90", "DM2", "2")}


def test_concept_list_of_a_system_not_stored_is_kept_as_written():
    vs = _vs({"system": LOINC, "concept": [{"code": "8480-6"}, {"code": "8462-4"}]})
    assert _codes(vs) == {(LOINC, "8480-6"), (LOINC, "8462-4")}


def test_whole_code_system_stored_lists_its_codes_and_one_not_stored_stays_a_wildcard():
    vs = _vs({"system": ICPC}, {"system": LOINC})
    assert _codes(vs) == _icpc(*ALL_ICPC) | {(LOINC, None)}


def test_whole_code_system_with_incomplete_content_stays_a_wildcard():
    fragment = {**FLAT_CS, "url": "http://akson.test/cs/fragment", "content": "fragment"}
    assert _codes(_vs({"system": fragment["url"]}), fragment) == {(fragment["url"], None)}


def test_multiple_includes_are_a_union_in_definition_order():
    vs = _vs({"system": ICPC, "filter": [_f("concept", "is-a", "T90")]},
             {"system": FLAT, "concept": [{"code": "A1"}]},
             {"system": ICPC, "concept": [{"code": "T90"}, {"code": "K86"}]})
    pairs = expand_valueset(vs, _resolver(ICPC_CS, FLAT_CS))
    assert pairs == [(ICPC, "T90"), (ICPC, "T90.1"), (ICPC, "K86"), (FLAT, "A1")]


def test_exclude_removes_codes_and_filters():
    vs = _vs({"system": ICPC, "filter": [_f("concept", "is-a", "K")]},
             exclude=({"system": ICPC, "concept": [{"code": "K"}]},
                      {"system": ICPC, "filter": [_f("component", "=", "1")]}))
    assert _codes(vs) == _icpc("K74", "K86", "K87")


def test_exclude_of_a_whole_system_drops_it_even_when_not_stored():
    vs = _vs({"system": LOINC}, {"system": ICPC, "concept": [{"code": "K86"}]},
             exclude=({"system": LOINC},))
    assert _codes(vs) == _icpc("K86")


def test_inactive_false_drops_retired_and_inactive_codes():
    vs = _vs({"system": ICPC, "filter": [_f("concept", "is-a", "K")]},
             {"system": FLAT, "concept": [{"code": "B"}, {"code": "C"}]}, inactive=False)
    assert _codes(vs) == _icpc("K", "K74", "K86", "K01") | _flat("B")
    vs["compose"]["inactive"] = True
    assert (ICPC, "K87") in _codes(vs) and (FLAT, "C") in _codes(vs)


def test_include_value_set_imports_and_intersects_with_the_system():
    hypertension = _vs({"system": ICPC, "concept": [{"code": "K86"}, {"code": "K87"}]},
                       {"system": LOINC, "concept": [{"code": "8480-6"}]},
                       url="http://akson.test/vs/hypertension")
    diabetes = _vs({"system": ICPC, "filter": [_f("concept", "is-a", "T90")]},
                   url="http://akson.test/vs/diabetes")
    both = _vs({"valueSet": [diabetes["url"]]}, {"valueSet": [hypertension["url"] + "|"]})
    assert _codes(both, hypertension, diabetes) == \
        _icpc("T90", "T90.1", "K86", "K87") | {(LOINC, "8480-6")}
    # valueSet together with a system: the intersection (valueset.html#compose)
    only_icpc_components = _vs({"system": ICPC, "filter": [_f("component", "=", "7")],
                                "valueSet": [hypertension["url"], diabetes["url"]]})
    assert _codes(only_icpc_components, hypertension, diabetes) == set()
    only_icpc = _vs({"system": ICPC, "valueSet": [hypertension["url"]]})
    assert _codes(only_icpc, hypertension) == _icpc("K86", "K87")


def test_import_intersected_with_a_system_not_stored_keeps_that_systems_codes():
    mixed = _vs({"system": LOINC, "concept": [{"code": "8480-6"}]},
                {"system": ICPC, "concept": [{"code": "K86"}]}, url="http://akson.test/vs/mixed")
    assert _codes(_vs({"system": LOINC, "valueSet": [mixed["url"]]}), mixed) == \
        {(LOINC, "8480-6")}


def test_imported_value_set_with_an_expansion_uses_the_expansion():
    expanded = {"resourceType": "ValueSet", "url": "http://akson.test/vs/expanded",
                "status": "active",
                "expansion": {"timestamp": "2024-01-01T00:00:00Z", "contains": [
                    {"system": LOINC, "code": "29463-7", "contains": [
                        {"system": LOINC, "code": "3141-9"}]}]}}
    assert _codes(_vs({"valueSet": [expanded["url"]]}), expanded) == \
        {(LOINC, "29463-7"), (LOINC, "3141-9")}


def test_versions_of_code_systems_and_value_sets_are_honoured():
    old = {**ICPC_CS, "version": "1", "concept": [{"code": "K86", "display": "Gammel"}]}
    resolve = _resolver(ICPC_CS, old)  # newest first: version 2, then 1
    pinned = _vs({"system": ICPC, "version": "1", "filter": [_f("concept", "is-a", "K86")]})
    assert [(c.code, c.display) for c in expand(pinned, resolve)] == [("K86", "Gammel")]
    latest = _vs({"system": ICPC, "filter": [_f("concept", "is-a", "K86")]})
    assert [(c.code, c.display) for c in expand(latest, resolve)] == \
        [("K86", "Hypertensjon ukomplisert")]
    missing = _vs({"system": ICPC, "version": "9", "filter": [_f("concept", "is-a", "K")]})
    with pytest.raises(FhirError, match="version '9'"):
        expand(missing, resolve)


def _error(vs: dict, *others: dict, limit: int = 100_000) -> FhirError:
    with pytest.raises(FhirError) as info:
        expand_valueset(vs, _resolver(ICPC_CS, FLAT_CS, *others), limit=limit)
    assert info.value.status == 400
    return info.value


def test_filter_on_a_code_system_not_stored_names_the_value_set_and_the_system():
    err = _error(_vs({"system": "http://snomed.info/sct",
                      "filter": [_f("concept", "is-a", "73211009")]}))
    assert "http://akson.test/vs/t" in err.diagnostics
    assert "http://snomed.info/sct" in err.diagnostics
    assert "not stored" in err.diagnostics


def test_excluding_codes_from_a_wildcard_is_refused():
    err = _error(_vs({"system": LOINC}, exclude=({"system": LOINC,
                                                  "concept": [{"code": "8480-6"}]},)))
    assert LOINC in err.diagnostics


def test_value_set_importing_itself_is_a_cycle():
    me = _vs({"valueSet": ["http://akson.test/vs/me"]}, url="http://akson.test/vs/me")
    assert "imports itself" in _error(me, me).diagnostics


def test_import_cycle_through_another_value_set():
    a = _vs({"valueSet": ["http://akson.test/vs/b"]}, url="http://akson.test/vs/a")
    b = _vs({"system": ICPC, "concept": [{"code": "K86"}]}, {"valueSet": [a["url"]]},
            url="http://akson.test/vs/b")
    err = _error(a, a, b)
    assert "imports itself" in err.diagnostics and "http://akson.test/vs/a" in err.diagnostics


def test_diamond_imports_are_not_a_cycle():
    leaf = _vs({"system": ICPC, "concept": [{"code": "K86"}]}, url="http://akson.test/vs/leaf")
    left = _vs({"valueSet": [leaf["url"]]}, url="http://akson.test/vs/left")
    right = _vs({"valueSet": [leaf["url"]]}, url="http://akson.test/vs/right")
    top = _vs({"valueSet": [left["url"]]}, {"valueSet": [right["url"]]})
    assert _codes(top, leaf, left, right) == _icpc("K86")


def test_expansion_beyond_the_cap_is_too_large():
    err = _error(_vs({"system": ICPC}), limit=5)
    assert "too large to expand for search" in err.diagnostics
    assert err.code == "too-costly"
    assert len(expand_valueset(_vs({"system": ICPC}), _resolver(ICPC_CS), limit=9)) == 9


def test_cap_also_holds_for_a_large_generated_code_system():
    big = {"resourceType": "CodeSystem", "url": "http://akson.test/cs/big", "status": "active",
           "content": "complete", "concept": [{"code": str(i)} for i in range(100_001)]}
    err = _error(_vs({"system": big["url"], "filter": [_f("concept", "regex", "[0-9]+")]}), big)
    assert "more than 100000 codes" in err.diagnostics


@pytest.mark.parametrize(("part", "words"), [
    ({"system": ICPC, "filter": [_f("concept", "sounds-like", "K")]}, "sounds-like"),
    ({"system": ICPC, "filter": [_f("component", "is-a", "7")]}, "only 'concept'"),
    ({"system": ICPC, "filter": [_f("concept", "regex", "(K+)+")]}, "nests quantifiers"),
    ({"system": ICPC, "filter": [_f("concept", "regex", "K[")]}, "not a valid regular"),
    ({"system": ICPC, "filter": [_f("component", "exists", "maybe")]}, "true or false"),
    ({"system": ICPC, "filter": [{"property": "concept", "op": "is-a"}]}, "property, op and"),
    ({"system": ICPC, "concept": [{"code": "K86"}], "filter": [_f("concept", "is-a", "K")]},
     "both concepts and filters"),
    ({"concept": [{"code": "K86"}]}, "without a system"),
    ({}, "neither a system nor a valueSet"),
    ({"valueSet": ["http://akson.test/vs/nowhere"]}, "not stored"),
])
def test_definitions_that_cannot_be_evaluated_are_400s(part, words):
    assert words in _error(_vs(part)).diagnostics


def test_value_set_without_compose_or_expansion_is_a_400():
    err = _error({"resourceType": "ValueSet", "id": "empty", "status": "draft"})
    assert "ValueSet/empty" in err.diagnostics


def test_load_fetches_what_imports_need_transitively_once():
    leaf = _vs({"system": ICPC, "filter": [_f("concept", "is-a", "T")]},
               url="http://akson.test/vs/leaf")
    loop = _vs({"valueSet": [leaf["url"]]}, {"valueSet": ["http://akson.test/vs/loop"]},
               url="http://akson.test/vs/loop")
    root = _vs({"valueSet": [loop["url"], "http://akson.test/vs/leaf|1"]},
               {"system": LOINC}, url="http://akson.test/vs/root")
    stored = {("ValueSet", leaf["url"]): [leaf], ("ValueSet", loop["url"]): [loop],
              ("CodeSystem", ICPC): [ICPC_CS]}
    asked: list[tuple[str, str]] = []

    async def fetch(kind: str, url: str) -> list[dict]:
        asked.append((kind, url))
        return stored.get((kind, url), [])

    library = asyncio.run(load(root, fetch))
    assert sorted(asked) == sorted([*stored, ("CodeSystem", LOINC)])
    assert library.resolve("CodeSystem", ICPC, None) is ICPC_CS
    assert library.resolve("CodeSystem", LOINC, None) is None
    assert library.resolve("ValueSet", leaf["url"], "1") is None  # no such version stored


def test_load_refuses_too_many_canonicals():
    chain = [_vs({"valueSet": [f"http://akson.test/vs/{i + 1}"]}, url=f"http://akson.test/vs/{i}")
             for i in range(10)]

    async def fetch(kind: str, url: str) -> list[dict]:
        i = int(url.rsplit("/", 1)[1])
        return [chain[i]] if i < len(chain) else []

    with pytest.raises(FhirError, match="more than 5 code systems and value sets"):
        asyncio.run(load(chain[0], fetch, Library(max_resources=5)))
