"""`_include`, `_revinclude` (with `:iterate` and `*`), `_summary` and `_elements`, on both
databases (https://hl7.org/fhir/R4/search.html#include, #summary, #elements)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.search.conftest import FNR, LOINC

SUBSETTED = ("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "SUBSETTED")


class Data:
    """Short names (`p1`, `ob1`, …) mapped to ids unique to this run, all tagged."""

    def __init__(self) -> None:
        self.run = uuid.uuid4().hex[:10]
        self.tag = f"https://akson.test/include/{self.run}"

    def id(self, name: str) -> str:
        return f"{self.run}-{name}"

    def name(self, res_id: str) -> str:
        return res_id.removeprefix(f"{self.run}-")

    def ref(self, res_type: str, name: str) -> dict:
        return {"reference": f"{res_type}/{self.id(name)}"}

    def resources(self) -> list[dict]:
        i, ref = self.id, self.ref

        def obs(name: str, patient: str, **more: object) -> dict:
            return {"resourceType": "Observation", "id": i(name), "status": "final",
                    "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                    "subject": ref("Patient", patient), **more}

        return [
            {"resourceType": "Organization", "id": i("o1"), "name": "Legekontoret"},
            {"resourceType": "Organization", "id": i("o2"), "name": "Apotekprodusent"},
            {"resourceType": "Practitioner", "id": i("pr1"), "name": [{"family": "Hansen"}]},
            {"resourceType": "Patient", "id": i("p1"), "text": {"status": "generated",
             "div": '<div xmlns="http://www.w3.org/1999/xhtml">Åse Øster</div>'},
             "identifier": [{"system": FNR, "value": "111"}], "active": True,
             "name": [{"family": "Øster", "given": ["Åse"]}], "gender": "female",
             "birthDate": "1980-05-17", "maritalStatus": {"text": "Gift"},
             "managingOrganization": ref("Organization", "o1"),
             "generalPractitioner": [ref("Practitioner", "pr1")]},
            {"resourceType": "Patient", "id": i("p2"), "name": [{"family": "Müller"}],
             "managingOrganization": ref("Organization", "o1")},
            {"resourceType": "Patient", "id": i("p3"), "name": [{"family": "Aas"}]},
            obs("ob1", "p1", performer=[ref("Practitioner", "pr1")]),
            obs("ob2", "p1"),
            obs("ob3", "p2"),
            obs("ob4", "p3"),  # p3 is deleted below: never included
            {"resourceType": "Medication", "id": i("m1"), "manufacturer": ref("Organization", "o2")},
            {"resourceType": "MedicationRequest", "id": i("mr1"), "status": "active",
             "intent": "order", "medicationReference": ref("Medication", "m1"),
             "subject": ref("Patient", "p1")},
        ]


@pytest.fixture(scope="session")
def data(server) -> Iterator[Data]:
    ds = Data()
    with httpx.Client(base_url=server.url + "/fhir", timeout=30, auth=server.auth()) as c:
        for res in ds.resources():
            res = {**res, "meta": {"tag": [{"system": ds.tag, "code": "t"}]}}
            resp = c.put(f"/{res['resourceType']}/{res['id']}", json=res)
            assert resp.status_code in (200, 201), resp.text
        resp = c.delete(f"/Patient/{ds.id('p3')}")
        assert resp.status_code in (200, 204), resp.text
    yield ds


def _get(client, ds: Data, path: str, params: list[tuple[str, str]], **kw) -> dict:
    resp = client.get("/" + path, params=[("_tag", f"{ds.tag}|t"), *params], **kw)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _entries(ds: Data, bundle: dict, mode: str) -> list[str]:
    return [f"{e['resource']['resourceType']}/{ds.name(e['resource']['id'])}"
            for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


# (path, params, expected matches, expected includes); includes are compared as sorted lists,
# so a resource included twice fails.
INCLUDE_CASES: list[tuple[str, list[tuple[str, str]], set[str], list[str]]] = [
    ("Observation", [("_include", "Observation:subject")],
     {"ob1", "ob2", "ob3", "ob4"}, ["Patient/p1", "Patient/p2"]),
    ("Observation", [("_include", "Observation:subject:Patient")],
     {"ob1", "ob2", "ob3", "ob4"}, ["Patient/p1", "Patient/p2"]),
    ("Observation", [("_include", "Observation:subject:Group")],
     {"ob1", "ob2", "ob3", "ob4"}, []),
    ("Observation", [("_id", "{ob1}"), ("_include", "*")],
     {"ob1"}, ["Patient/p1", "Practitioner/pr1"]),
    ("Observation", [("_id", "{ob1}"), ("_include", "Observation:*")],
     {"ob1"}, ["Patient/p1", "Practitioner/pr1"]),
    ("Patient", [("_revinclude", "Observation:subject")],
     {"p1", "p2"}, ["Observation/ob1", "Observation/ob2", "Observation/ob3"]),
    ("Patient", [("_id", "{p2}"), ("_revinclude", "*")], {"p2"}, ["Observation/ob3"]),
    ("Patient", [("_id", "{p1}"), ("_revinclude", "MedicationRequest:subject"),
                 ("_include", "Patient:organization")],
     {"p1"}, ["MedicationRequest/mr1", "Organization/o1"]),
    # :iterate follows what was included (search.html#include).
    ("Observation", [("_include", "Observation:subject"),
                     ("_include:iterate", "Patient:organization")],
     {"ob1", "ob2", "ob3", "ob4"}, ["Organization/o1", "Patient/p1", "Patient/p2"]),
    ("MedicationRequest", [("_include", "MedicationRequest:medication"),
                           ("_include:iterate", "Medication:manufacturer")],
     {"mr1"}, ["Medication/m1", "Organization/o2"]),
    ("MedicationRequest", [("_include", "MedicationRequest:medication")],
     {"mr1"}, ["Medication/m1"]),  # without :iterate, one step only
    ("Organization", [("_id", "{o1}"), ("_revinclude", "Patient:organization"),
                      ("_revinclude:iterate", "Observation:subject")],
     {"o1"}, ["Observation/ob1", "Observation/ob2", "Observation/ob3", "Patient/p1",
              "Patient/p2"]),
    # A resource that is already a match is not repeated as an include.
    ("Patient", [("_include", "Patient:general-practitioner"),
                 ("_revinclude:iterate", "Patient:general-practitioner")],
     {"p1", "p2"}, ["Practitioner/pr1"]),
]


@pytest.mark.parametrize(("path", "params", "matches", "includes"), INCLUDE_CASES,
                         ids=[f"{p}?{'&'.join(f'{k}={v}' for k, v in q)}"
                              for p, q, _, _ in INCLUDE_CASES])
def test_include(client, data, path, params, matches, includes):
    filled = [(k, v.format(**{n: data.id(n) for n in ("ob1", "p1", "p2", "o1")}))
              for k, v in params]
    bundle = _get(client, data, path, filled)
    got = _entries(data, bundle, "match")
    assert {g.split("/")[1] for g in got} == matches and len(got) == len(matches)
    assert sorted(_entries(data, bundle, "include")) == includes
    assert bundle["total"] == len(matches)  # includes never count in the total


def test_includes_do_not_page_and_tokens_keep_them(client, data):
    pairs = [("_include", "Observation:subject"), ("_count", "1"), ("_total", "accurate")]
    bundle = _get(client, data, "Observation", pairs)
    pages = []
    while True:
        assert bundle["total"] == 4
        pages.append((_entries(data, bundle, "match"), _entries(data, bundle, "include")))
        nxt = [lnk["url"] for lnk in bundle["link"] if lnk["relation"] == "next"]
        if not nxt:
            break
        assert "_include" not in nxt[0] and len(pages) < 10
        resp = client.get(nxt[0])
        assert resp.status_code == 200, resp.text
        bundle = resp.json()
    assert pages == [(["Observation/ob1"], ["Patient/p1"]), (["Observation/ob2"], ["Patient/p1"]),
                     (["Observation/ob3"], ["Patient/p2"]), (["Observation/ob4"], [])]


def test_summary_count(client, data):
    bundle = _get(client, data, "Observation", [("_summary", "count")])
    assert bundle["total"] == 4 and "entry" not in bundle
    bundle = _get(client, data, "Observation", [("_summary", "count"), ("_count", "2"),
                                                 ("_include", "Observation:subject")])
    assert bundle["total"] == 4 and "entry" not in bundle


def _tags(resource: dict) -> set[tuple[str, str]]:
    return {(t["system"], t["code"]) for t in resource.get("meta", {}).get("tag", [])}


def test_summary_true_keeps_summary_elements_and_tags_subsetted(client, data):
    bundle = _get(client, data, "Patient", [("_id", data.id("p1")), ("_summary", "true"),
                                            ("_include", "Patient:general-practitioner")])
    patient, practitioner = (e["resource"] for e in bundle["entry"])
    assert set(patient) == {"resourceType", "id", "meta", "identifier", "active", "name",
                            "gender", "birthDate", "managingOrganization"}
    assert SUBSETTED in _tags(patient) and (data.tag, "t") in _tags(patient)
    assert patient["meta"]["versionId"] == "1"
    assert set(practitioner) == {"resourceType", "id", "meta", "name"}  # summary on includes too
    assert SUBSETTED in _tags(practitioner)


def test_summary_text_and_data(client, data):
    text = _get(client, data, "Observation", [("_id", data.id("ob1")), ("_summary", "text")])
    assert set(text["entry"][0]["resource"]) == {"resourceType", "id", "meta", "status", "code"}
    data_only = _get(client, data, "Patient", [("_id", data.id("p1")), ("_summary", "data")])
    patient = data_only["entry"][0]["resource"]
    assert "text" not in patient and "maritalStatus" in patient and SUBSETTED in _tags(patient)
    full = _get(client, data, "Patient", [("_id", data.id("p1")), ("_summary", "false")])
    assert "text" in full["entry"][0]["resource"]
    assert SUBSETTED not in _tags(full["entry"][0]["resource"])


def test_elements_on_search_keeps_mandatory_and_pages(client, data):
    bundle = _get(client, data, "Patient", [("_elements", "name,birthDate"), ("_count", "1"),
                                            ("_sort", "_id")])
    first = bundle["entry"][0]["resource"]
    assert set(first) == {"resourceType", "id", "meta", "name", "birthDate"}
    assert SUBSETTED in _tags(first)
    nxt = [lnk["url"] for lnk in bundle["link"] if lnk["relation"] == "next"][0]
    second = client.get(nxt).json()["entry"][0]["resource"]
    assert second["id"] == data.id("p2") and set(second) == {"resourceType", "id", "meta", "name"}
    # Mandatory elements stay (Observation.status and .code), choice names match value[x].
    bundle = _get(client, data, "Observation", [("_id", data.id("ob1")), ("_elements", "subject"),
                                                ("_include", "Observation:performer")])
    ob, pr = (e["resource"] for e in bundle["entry"])
    assert set(ob) == {"resourceType", "id", "meta", "status", "code", "subject"}
    assert pr["name"] == [{"family": "Hansen"}]  # _elements names the searched type's elements


def test_summary_and_elements_on_read(client, data):
    url = f"/Patient/{data.id('p1')}"
    resp = client.get(url, params={"_elements": "name,birthDate"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"resourceType", "id", "meta", "name", "birthDate"}
    assert SUBSETTED in _tags(body)
    body = client.get(url, params={"_summary": "true"}).json()
    assert "generalPractitioner" not in body and body["gender"] == "female"
    whole = client.get(url).json()
    assert "generalPractitioner" in whole and SUBSETTED not in _tags(whole)
    assert client.get(url, params={"_summary": "count"}).status_code == 400
    assert client.get(url, params={"_elements": "shoeSize"}).status_code == 400


@pytest.mark.parametrize(("path", "params", "name"), [
    ("Observation", [("_include", "Observation:shoe")], "shoe"),
    ("Observation", [("_include", "Observation:status")], "status"),
    ("Observation", [("_include", "Observation:subject:Medication")], "Medication"),
    ("Observation", [("_include", "Patient:organization")], "Patient:organization"),
    ("Observation", [("_include", "subject")], "subject"),
    ("Observation", [("_include:recurse", "Observation:subject")], "_include"),
    ("Organization", [("_revinclude", "Observation:subject")], "Organization"),
    ("Patient", [("_revinclude", "Observation:subject:Group")], "Patient"),
    ("Patient", [("_summary", "maybe")], "_summary"),
    ("Patient", [("_elements", "shoeSize")], "shoeSize"),
    ("Patient", [("_elements", "name"), ("_summary", "true")], "_elements"),
])
def test_refused_with_400(client, path, params, name):
    resp = client.get("/" + path, params=params)
    assert resp.status_code == 400, resp.text
    assert name in resp.json()["issue"][0]["diagnostics"]


def test_lenient_drops_unknown_include_with_a_warning(client, data):
    bundle = _get(client, data, "Observation", [("_id", data.id("ob1")),
                                                ("_include", "Observation:shoe"),
                                                ("_include", "Observation:subject")],
                  headers={"Prefer": "handling=lenient"})
    assert _entries(data, bundle, "match") == ["Observation/ob1"]
    assert _entries(data, bundle, "include") == ["Patient/p1"]
    outcome = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "outcome"][0]
    assert outcome["issue"][0]["severity"] == "warning"
    assert "shoe" in outcome["issue"][0]["diagnostics"]


def test_policy_predicates_filter_includes_inside_the_query(tmp_path, monkeypatch):
    """`scope` and `extra` (the next issue's access policy) reach every included row, and
    MAX_INCLUDED cuts a page's includes with a flag rather than silently."""
    import asyncio

    from akson.fhir.search import parse
    from akson.fhir.searchparams import SearchParamRegistry
    from akson.store import include
    from akson.store.database import connect
    from akson.store.migrate import upgrade
    from akson.store.repository import ResourceStore
    from akson.store.search_sql import Where

    url = f"sqlite:///{tmp_path / 'include.db'}"
    upgrade(url)
    ds = Data()
    registry = SearchParamRegistry.default()

    def hide_p1(alias: str, res_type: str) -> Where:
        where = Where()
        if res_type == "Patient":
            where.add(f"{alias}.res_id <> %s", ds.id("p1"))
        return where

    not_o1 = Where()
    not_o1.add("r.res_id <> %s", ds.id("o1"))

    async def run() -> dict[str, object]:
        db = connect(url)
        await db.open()
        store = ResourceStore(db, registry)
        async with store.session(write=True) as s:
            for res in ds.resources():
                await s.update(res["resourceType"], res["id"], res)
        out: dict[str, object] = {}
        async with store.session(write=False) as s:
            for label, res_type, pairs, kwargs in [
                ("scope", "Observation", [("_include", "Observation:subject"),
                                          ("_include:iterate", "Patient:organization")],
                 {"scope": hide_p1}),
                ("extra", "Observation", [("_include", "*"),
                                          ("_include:iterate", "Patient:organization")],
                 {"extra": not_o1}),
                ("revscope", "Organization", [("_revinclude", "*")], {"scope": hide_p1}),
            ]:
                query = parse(res_type, pairs, registry=registry)
                page = await s.search(query)
                got = await include.fetch_included(s, query, page.items, **kwargs)
                out[label] = sorted(f"{i.res_type}/{ds.name(i.res_id)}" for i in got.items)
            monkeypatch.setattr(include, "MAX_INCLUDED", 2)
            query = parse("Patient", [("_revinclude", "Observation:subject")], registry=registry)
            page = await s.search(query)
            cut = await include.fetch_included(s, query, page.items)
            out["cut"] = (len(cut.items), cut.truncated)
        await db.close()
        return out

    got = asyncio.run(run())
    assert got["scope"] == ["Organization/o1", "Patient/p2", "Patient/p3"]
    assert got["extra"] == ["Patient/p1", "Patient/p2", "Patient/p3", "Practitioner/pr1"]
    assert got["revscope"] == ["Medication/m1", "Patient/p2"]
    assert got["cut"] == (2, True)
