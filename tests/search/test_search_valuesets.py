"""`:in` / `:not-in` against ValueSets stored on the server, and `ValueSet/$expand`, over HTTP on
both databases (https://hl7.org/fhir/R4/search.html#token, valueset-operation-expand.html).

The run stores its own ICPC-2-like CodeSystem, ValueSets written as a terminologist writes them
(filters, imports, excludes) and Conditions coded with it, all under a tag unique to the run.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"


@dataclass
class Terms:
    run: str
    cs: str  # the CodeSystem's canonical url
    vs: str  # prefix of the ValueSets' canonical urls
    tag: str

    def id(self, name: str) -> str:
        return f"{self.run}-{name}"

    def name(self, res_id: str) -> str:
        return res_id.removeprefix(f"{self.run}-")


def _resources(t: Terms) -> list[dict]:
    def condition(name: str, system: str, code: str) -> dict:
        return {"resourceType": "Condition", "id": t.id(name),
                "subject": {"reference": f"Patient/{t.id('p')}"},
                "code": {"coding": [{"system": system, "code": code}]}}

    def valueset(name: str, compose: dict) -> dict:
        return {"resourceType": "ValueSet", "id": t.id(name), "url": f"{t.vs}/{name}",
                "status": "active", "compose": compose}

    def f(prop: str, op: str, value: str) -> dict:
        return {"property": prop, "op": op, "value": value}

    return [
        {"resourceType": "CodeSystem", "id": t.id("icpc"), "url": t.cs, "version": "2",
         "status": "active", "content": "complete", "hierarchyMeaning": "is-a",
         "concept": [
             {"code": "K", "display": "Hjerte og kar", "concept": [
                 {"code": "K86", "display": "Hypertensjon ukomplisert"},
                 {"code": "K87", "display": "Hypertensjon komplisert"}]},
             {"code": "T", "display": "Endokrine", "concept": [
                 {"code": "T89", "display": "Diabetes type 1"},
                 {"code": "T90", "display": "Diabetes type 2"}]}]},
        {"resourceType": "Patient", "id": t.id("p"), "name": [{"family": "Testesen"}]},
        condition("k86", t.cs, "K86"),
        condition("k87", t.cs, "K87"),
        condition("t89", t.cs, "T89"),
        condition("t90", t.cs, "T90"),
        condition("sct", SNOMED, "38341003"),
        valueset("cardio", {"include": [{"system": t.cs, "filter": [f("concept", "is-a", "K")]}]}),
        valueset("dm2", {"include": [{"system": t.cs, "concept": [{"code": "T90"}]}]}),
        valueset("chronic", {"include": [{"valueSet": [f"{t.vs}/cardio"]},
                                         {"valueSet": [f"{t.vs}/dm2|"]}]}),
        # several value sets in one include: their intersection (valueset.html#compose)
        valueset("cardio-and-dm2", {"include": [{"valueSet": [f"{t.vs}/cardio",
                                                              f"{t.vs}/dm2"]}]}),
        valueset("uncomplicated", {
            "include": [{"system": t.cs, "filter": [f("concept", "is-a", "K")]}],
            "exclude": [{"system": t.cs, "concept": [{"code": "K87"}]}]}),
        valueset("snomed-all", {"include": [{"system": SNOMED}, {"system": t.cs,
                                                                "concept": [{"code": "T89"}]}]}),
        valueset("snomed-filter", {"include": [{"system": SNOMED,
                                                "filter": [f("concept", "is-a", "38341003")]}]}),
        valueset("cycle", {"include": [{"valueSet": [f"{t.vs}/cycle"]}]}),
    ]


@pytest.fixture(scope="module")
def terms(server) -> Iterator[Terms]:
    """Store the run's code system, value sets and conditions once per backend."""
    run = uuid.uuid4().hex[:10]
    t = Terms(run, f"http://akson.test/cs/{run}/icpc2", f"http://akson.test/vs/{run}",
              f"https://akson.test/run/{run}")
    with httpx.Client(base_url=server.url + "/fhir", timeout=30, auth=server.auth()) as c:
        for res in _resources(t):
            body = {**res, "meta": {"tag": [{"system": t.tag, "code": "t"}]}}
            resp = c.put(f"/{res['resourceType']}/{res['id']}", json=body)
            assert resp.status_code in (200, 201), resp.text
    yield t


def _conditions(client: httpx.Client, t: Terms, **params: str) -> set[str]:
    resp = client.get("/Condition", params={**params, "_tag": f"{t.tag}|t"})
    assert resp.status_code == 200, resp.text
    return {t.name(e["resource"]["id"]) for e in resp.json().get("entry", [])}


CASES: list[tuple[str, str, str, set[str]]] = [
    # (modifier, value set, why, expected condition names)
    ("in", "cardio", "is-a filter on the nested hierarchy", {"k86", "k87"}),
    ("not-in", "cardio", "is-a filter, negated", {"t89", "t90", "sct"}),
    ("in", "chronic", "two imported value sets", {"k86", "k87", "t90"}),
    ("not-in", "chronic", "imports, negated", {"t89", "sct"}),
    ("in", "cardio-and-dm2", "two imports in one include intersect", set()),
    ("in", "uncomplicated", "an exclude", {"k86"}),
    ("not-in", "uncomplicated", "an exclude, negated", {"k87", "t89", "t90", "sct"}),
    ("in", "snomed-all", "a whole code system not stored is every code of it", {"sct", "t89"}),
]


@pytest.mark.parametrize(("modifier", "vs", "why", "expected"), CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_in_and_not_in_by_canonical_url(client, terms, modifier, vs, why, expected):
    assert _conditions(client, terms, **{f"code:{modifier}": f"{terms.vs}/{vs}"}) == expected


def test_in_by_value_set_id_and_by_versioned_url(client, terms):
    assert _conditions(client, terms, **{"code:in": f"ValueSet/{terms.id('uncomplicated')}"}) \
        == {"k86"}
    base = str(client.base_url).rstrip("/")
    assert _conditions(client, terms,
                       **{"code:in": f"{base}/ValueSet/{terms.id('cardio')}"}) == {"k86", "k87"}
    # the stored ValueSets carry no version, so a versioned url names none of them
    resp = client.get("/Condition", params={"code:in": f"{terms.vs}/cardio|9"})
    assert resp.status_code == 400
    assert resp.json()["resourceType"] == "OperationOutcome"


def test_filter_on_a_code_system_not_stored_is_a_400_naming_both(client, terms):
    resp = client.get("/Condition", params={"code:in": f"{terms.vs}/snomed-filter"})
    assert resp.status_code == 400, resp.text
    text = resp.json()["issue"][0]["diagnostics"]
    assert f"{terms.vs}/snomed-filter" in text and SNOMED in text and "not stored" in text


def test_value_set_importing_itself_is_a_400(client, terms):
    resp = client.get("/Condition", params={"code:not-in": f"{terms.vs}/cycle"})
    assert resp.status_code == 400, resp.text
    assert "imports itself" in resp.json()["issue"][0]["diagnostics"]


def test_unknown_value_set_is_a_400(client, terms):
    resp = client.get("/Condition", params={"code:in": f"{terms.vs}/nowhere"})
    assert resp.status_code == 400
    assert "not known" in resp.json()["issue"][0]["diagnostics"]


# ------------------------------------------------------------------------------ $expand


def _contains(body: dict) -> list[tuple[str | None, str | None, str | None]]:
    return [(c.get("system"), c.get("code"), c.get("display"))
            for c in body["expansion"].get("contains", [])]


def test_expand_instance_lists_codes_with_displays(client, terms):
    resp = client.get(f"/ValueSet/{terms.id('chronic')}/$expand")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["resourceType"] == "ValueSet" and body["url"] == f"{terms.vs}/chronic"
    assert "compose" not in body and "meta" not in body
    assert body["expansion"]["total"] == 4
    assert body["expansion"]["timestamp"].endswith("Z")
    assert _contains(body) == [(terms.cs, "K", "Hjerte og kar"),
                               (terms.cs, "K86", "Hypertensjon ukomplisert"),
                               (terms.cs, "K87", "Hypertensjon komplisert"),
                               (terms.cs, "T90", "Diabetes type 2")]
    assert all(c["version"] == "2" for c in body["expansion"]["contains"])

def test_expand_by_url_with_paging_and_filter(client, terms):
    resp = client.get("/ValueSet/$expand", params={"url": f"{terms.vs}/cardio",
                                                   "includeDefinition": "true"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert [c[1] for c in _contains(body)] == ["K", "K86", "K87"]
    assert body["compose"]["include"][0]["filter"][0]["op"] == "is-a"
    page = client.get("/ValueSet/$expand", params={"url": f"{terms.vs}/cardio", "offset": "1",
                                                   "count": "1"}).json()
    assert page["expansion"]["total"] == 3 and page["expansion"]["offset"] == 1
    assert [c[1] for c in _contains(page)] == ["K86"]
    found = client.get("/ValueSet/$expand", params={"url": f"{terms.vs}/cardio",
                                                    "filter": "komplisert"}).json()
    assert [c[1] for c in _contains(found)] == ["K86", "K87"]  # "ukomplisert" holds it too


def test_expand_shows_a_code_system_not_stored_as_one_abstract_entry(client, terms):
    body = client.get(f"/ValueSet/{terms.id('snomed-all')}/$expand").json()
    entries = body["expansion"]["contains"]
    assert entries[0]["system"] == SNOMED and "code" not in entries[0] and entries[0]["abstract"]
    assert (entries[1]["system"], entries[1]["code"]) == (terms.cs, "T89")


@pytest.mark.parametrize(("path", "params", "status", "words"), [
    ("/ValueSet/$expand", {}, 400, "needs the parameter 'url'"),
    ("/ValueSet/$expand", {"url": "http://akson.test/vs/never-stored"}, 404, "not known"),
    ("/ValueSet/does-not-exist/$expand", {}, 404, "not known"),
    ("/ValueSet/{snomed-filter}/$expand", {}, 400, "not stored"),
    ("/ValueSet/{cycle}/$expand", {}, 400, "imports itself"),
    ("/ValueSet/{cardio}/$expand", {"count": "-1"}, 400, "non-negative integer"),
    ("/ValueSet/{cardio}/$expand", {"displayLanguage": "nb"}, 400, "does not support"),
])
def test_expand_errors_are_operation_outcomes(client, terms, path, params, status, words):
    for name in ("snomed-filter", "cycle", "cardio"):
        path = path.replace("{" + name + "}", terms.id(name))
    resp = client.get(path, params=params)
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome"
    assert words in body["issue"][0]["diagnostics"]


def test_expand_of_a_deleted_value_set_is_gone(client, terms):
    vs = {"resourceType": "ValueSet", "id": terms.id("gone"), "status": "active",
          "compose": {"include": [{"system": terms.cs}]}}
    assert client.put(f"/ValueSet/{vs['id']}", json=vs).status_code in (200, 201)
    assert [c[1] for c in _contains(client.get(f"/ValueSet/{vs['id']}/$expand").json())] == \
        ["K", "K86", "K87", "T", "T89", "T90"]
    assert client.delete(f"/ValueSet/{vs['id']}").status_code in (200, 204)
    assert client.get(f"/ValueSet/{vs['id']}/$expand").status_code == 410


def test_expand_by_post_with_parameters_and_an_inline_value_set(client, terms):
    asked = {"resourceType": "Parameters", "parameter": [
        {"name": "url", "valueUri": f"{terms.vs}/cardio"}, {"name": "count", "valueInteger": 2},
        {"name": "activeOnly", "valueBoolean": False}]}
    body = client.post("/ValueSet/$expand", json=asked).json()
    assert [c[1] for c in _contains(body)] == ["K", "K86"] and body["expansion"]["total"] == 3
    draft = {"resourceType": "ValueSet", "status": "draft", "compose": {
        "include": [{"system": terms.cs, "filter": [
            {"property": "concept", "op": "descendent-of", "value": "T"}]}],
        "exclude": [{"valueSet": [f"{terms.vs}/dm2"]}]}}
    resp = client.post("/ValueSet/$expand", json={"resourceType": "Parameters", "parameter": [
        {"name": "valueSet", "resource": draft}]})
    assert resp.status_code == 200, resp.text
    assert _contains(resp.json()) == [(terms.cs, "T89", "Diabetes type 1")]
    assert client.post(f"/ValueSet/{terms.id('dm2')}/$expand").json()["expansion"]["total"] == 1
    wrong = client.post("/ValueSet/$expand", json={"resourceType": "Patient"})
    assert wrong.status_code == 400 and "Parameters" in wrong.json()["issue"][0]["diagnostics"]


def test_expand_is_get_or_post_and_is_in_the_capability_statement(client, terms):
    assert client.delete(f"/ValueSet/{terms.id('cardio')}/$expand").status_code == 405
    meta = client.get("/metadata").json()
    vs = next(r for r in meta["rest"][0]["resource"] if r["type"] == "ValueSet")
    assert {"name": "expand",
            "definition": "http://hl7.org/fhir/OperationDefinition/ValueSet-expand"} in vs["operation"]


def test_large_value_set_in_search(client, terms):
    """A value set of a few thousand codes (an is-a on a big hierarchy) searches like a small
    one (SQLite refuses an OR nested more than 1000 deep, so the codes go in one IN list)."""
    n = 3000
    big = {"resourceType": "CodeSystem", "id": terms.id("big"), "url": f"{terms.cs}-big",
           "status": "active", "content": "complete",
           "concept": [{"code": "root", "concept": [{"code": f"c{i}"} for i in range(n)]}]}
    assert client.put(f"/CodeSystem/{big['id']}", json=big).status_code in (200, 201)
    cond = {"resourceType": "Condition", "id": terms.id("big-c"),
            "meta": {"tag": [{"system": terms.tag, "code": "t"}]},
            "subject": {"reference": f"Patient/{terms.id('p')}"},
            "code": {"coding": [{"system": big["url"], "code": f"c{n - 1}"}]}}
    assert client.put(f"/Condition/{cond['id']}", json=cond).status_code in (200, 201)
    vs = {"resourceType": "ValueSet", "id": terms.id("big-vs"), "url": f"{terms.vs}/big",
          "status": "active", "compose": {"include": [{"system": big["url"], "filter": [
              {"property": "concept", "op": "is-a", "value": "root"}]}]}}
    assert client.put(f"/ValueSet/{vs['id']}", json=vs).status_code in (200, 201)
    assert _conditions(client, terms, **{"code:in": vs["url"]}) == {"big-c"}
    assert "big-c" not in _conditions(client, terms, **{"code:not-in": vs["url"]})
