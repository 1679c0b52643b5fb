"""The search compiler, table-driven on both databases (https://hl7.org/fhir/R4/search.html).

Each case is (path, query, expected names). A list means the order matters (`_sort`); a set
that it does not. Every query is scoped to the run's data set by its `_tag`.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

from tests.search.conftest import FNR, LOINC, SNOMED, UCUM, V2_0203, DataSet

# {vs} and {run} are filled in from the data set; {base} with the server's FHIR base.
CASES: list[tuple[str, dict[str, str], list[str] | set[str]]] = [
    # --- string (search.html#string): prefix, accent/case folding, :exact, :contains
    ("Patient", {"family": "oster"}, {"p1"}),
    ("Patient", {"family": "Øst"}, {"p1"}),
    ("Patient", {"family": "MULLER"}, {"p2"}),
    ("Patient", {"given": "ase"}, {"p1"}),
    ("Patient", {"family:exact": "Øster"}, {"p1"}),
    ("Patient", {"family:exact": "øster"}, set()),
    ("Patient", {"family:contains": "ll"}, {"p2"}),
    ("Patient", {"family": "oster,aas"}, {"p1", "p3"}),
    ("Organization", {"name": "legekontoret sor"}, {"o1"}),
    ("Organization", {"name": "sore"}, set()),  # a prefix of the whole value, not of a word
    # --- token (search.html#token)
    ("Patient", {"gender": "female,male"}, {"p1", "p2"}),
    ("Patient", {"gender:not": "female"}, {"p2", "p3"}),
    ("Patient", {"identifier": f"{FNR}|111"}, {"p1"}),
    ("Patient", {"identifier": f"{FNR}|"}, {"p1", "p2"}),
    ("Patient", {"identifier": "|111"}, set()),
    ("Patient", {"identifier:of-type": f"{V2_0203}|NI|111"}, {"p1"}),
    ("Patient", {"identifier:of-type": f"{V2_0203}|MR|111"}, set()),
    ("Patient", {"identifier:text": "fodsels"}, {"p1"}),
    ("Patient", {"identifier:missing": "true"}, {"p3"}),
    ("Observation", {"code": f"{LOINC}|8480-6"}, {"ob1"}),
    ("Observation", {"code": f"{LOINC}|"}, {"ob1", "ob2"}),
    ("Observation", {"code": "271649006"}, {"ob3"}),
    ("Observation", {"code:not": f"{LOINC}|8480-6"}, {"ob2", "ob3"}),
    ("Observation", {"code:text": "systolic"}, {"ob1"}),
    ("Observation", {"code:text": "blood"}, {"ob1"}),
    ("Observation", {"code:text": "systolisk bt"}, {"ob1"}),
    ("Observation", {"code:in": "{vs}/a"}, {"ob1"}),
    ("Observation", {"code:in": "{vs}/a/b"}, {"ob3"}),
    ("Observation", {"code:in": "{vs}/x"}, {"ob2"}),
    ("Observation", {"code:not-in": "{vs}/a"}, {"ob2", "ob3"}),
    ("Observation", {"status": "final", "code": f"{LOINC}|8480-6,{SNOMED}|271649006"},
     {"ob1", "ob3"}),
    # --- meta parameters
    ("Patient", {"_security": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R"},
     {"p1"}),
    ("Patient", {"_profile": "http://akson.test/profile/{run}"}, {"p1"}),
    # --- date (search.html#date): precision-aware, zone-less as Europe/Oslo
    ("Patient", {"birthdate": "1980"}, {"p1", "p2"}),
    ("Patient", {"birthdate": "1980-05"}, {"p1"}),
    ("Patient", {"birthdate": "ge1980-05-17"}, {"p1", "p2"}),
    ("Patient", {"birthdate": "gt1980-05-17"}, {"p2"}),
    ("Patient", {"birthdate": "lt1980-05-17"}, {"p2", "p3"}),
    ("Patient", {"birthdate": "le1975-01-01"}, {"p3"}),
    ("Patient", {"birthdate": "ne1980"}, {"p3"}),
    ("Patient", {"birthdate": "sa1979"}, {"p1", "p2"}),
    ("Patient", {"birthdate": "eb1980"}, {"p3"}),
    ("Patient", {"birthdate": ["ge1979", "le1981"]}, {"p1", "p2"}),  # AND
    ("Observation", {"date": "2024-03-01"}, {"ob1"}),
    ("Observation", {"date": "2024-03-02"}, {"ob2"}),  # 23:30Z is 00:30 in Oslo
    ("Observation", {"date": "2024"}, {"ob1", "ob2"}),
    ("Observation", {"date": "2024-03-01T10:00:00"}, {"ob1"}),
    ("Observation", {"date": "2024-03-01T09:00:00Z"}, {"ob1"}),
    ("Observation", {"date": "2023-06"}, set()),  # a year-long period is not within June
    ("Observation", {"date": "ap2023-06-15"}, {"ob3"}),
    ("Observation", {"date": "lt2024"}, {"ob3"}),
    # --- number (search.html#number): precision of the given value
    ("RiskAssessment", {"probability": "0.25"}, {"ra1"}),
    ("RiskAssessment", {"probability": "0.2"}, set()),
    ("RiskAssessment", {"probability": "0.3"}, {"ra1"}),  # [0.25, 0.35)
    ("RiskAssessment", {"probability": "gt0.5"}, {"ra2"}),
    ("RiskAssessment", {"probability": "le0.25"}, {"ra1"}),
    ("RiskAssessment", {"probability": "ne0.25"}, {"ra2"}),
    ("RiskAssessment", {"probability:missing": "true"}, {"ra3"}),
    # --- quantity (search.html#quantity)
    ("Observation", {"value-quantity": "120"}, {"ob1"}),
    ("Observation", {"value-quantity": "gt100"}, {"ob1"}),
    ("Observation", {"value-quantity": "lt100"}, {"ob2"}),
    ("Observation", {"value-quantity": f"72.5|{UCUM}|kg"}, {"ob2"}),
    ("Observation", {"value-quantity": f"72.5|{UCUM}|g"}, set()),
    ("Observation", {"value-quantity": "120||mm[Hg]"}, {"ob1"}),
    ("Observation", {"value-quantity": "ap110"}, {"ob1"}),
    ("Observation", {"value-quantity:missing": "true"}, {"ob3"}),
    # --- uri (search.html#uri)
    ("ValueSet", {"url": "{vs}/a"}, {"vs1"}),
    ("ValueSet", {"url:below": "{vs}/a"}, {"vs1", "vs2"}),
    ("ValueSet", {"url:above": "{vs}/a/b/c"}, {"vs1", "vs2"}),
    # --- reference (search.html#reference)
    ("Observation", {"subject": "Patient/{p1}"}, {"ob1", "ob3"}),
    ("Observation", {"subject:Patient": "{p1}"}, {"ob1", "ob3"}),
    ("Observation", {"patient": "{p2}"}, {"ob2"}),
    ("Observation", {"subject": "{base}/Patient/{p1}"}, {"ob1", "ob3"}),
    ("Patient", {"organization:missing": "true"}, {"p3"}),
    ("Patient", {"general-practitioner:Practitioner": "{pr1}"}, {"p1"}),
    ("Condition", {"subject:identifier": f"{FNR}|111"}, {"c1"}),
    # --- composite (search.html#composite): both parts from the same element
    ("Observation", {"code-value-quantity": f"{LOINC}|8480-6$gt100"}, {"ob1"}),
    ("Observation", {"component-code-value-quantity": f"{LOINC}|8480-6$gt100"}, {"ob1"}),
    ("Observation", {"component-code-value-quantity": f"{LOINC}|8462-4$gt100"}, {"ob2"}),
    ("Observation", {"component-code-value-quantity": f"{LOINC}|8480-6$gt200,{LOINC}|8462-4$lt90"},
     {"ob1"}),
    # --- chains (search.html#chaining), to depth 2
    ("Observation", {"subject:Patient.family": "oster"}, {"ob1", "ob3"}),
    ("Observation", {"patient.organization.name": "bergen"}, {"ob2"}),
    ("Observation", {"subject:Patient.organization.name": "legekontoret"}, {"ob1", "ob3"}),
    ("Patient", {"general-practitioner.family": "hansen"}, {"p1"}),
    ("Patient", {"organization.name:exact": "Bergen Helse"}, {"p2"}),
    # --- reverse chains (search.html#has), nested
    ("Patient", {"_has:Observation:patient:code": f"{LOINC}|8480-6"}, {"p1"}),
    ("Patient", {"_has:Observation:subject:value-quantity": "lt100"}, {"p2"}),
    ("Organization", {"_has:Patient:organization:_has:Observation:patient:code": "271649006"},
     {"o1"}),
    ("Patient", {"_has:Observation:patient:subject:Patient.family": "muller"}, {"p2"}),
    # --- _sort (search.html#sort): several keys, every type, NULLs last
    ("Patient", {"_sort": "family"}, ["p3", "p2", "p1"]),
    ("Patient", {"_sort": "-family"}, ["p1", "p2", "p3"]),
    ("Patient", {"_sort": "-birthdate"}, ["p2", "p1", "p3"]),
    ("Patient", {"_sort": "-gender,family"}, ["p3", "p2", "p1"]),
    ("Patient", {"_sort": "organization,-family"}, ["p1", "p2", "p3"]),
    ("Patient", {"_sort": "_id"}, ["p1", "p2", "p3"]),
    ("Observation", {"_sort": "date"}, ["ob3", "ob1", "ob2"]),
    ("Observation", {"_sort": "-value-quantity"}, ["ob1", "ob2", "ob3"]),
    ("Observation", {"_sort": "value-quantity"}, ["ob2", "ob1", "ob3"]),
    ("RiskAssessment", {"_sort": "-probability"}, ["ra2", "ra1", "ra3"]),
    ("ValueSet", {"_sort": "-url"}, ["vs3", "vs2", "vs1"]),
    # --- :missing on every type (search.html#modifiers)
    ("Patient", {"family:missing": "false"}, {"p1", "p2", "p3"}),
    ("Patient", {"birthdate:missing": "true"}, set()),
    ("Observation", {"code-value-quantity:missing": "true"}, {"ob3"}),
    ("ValueSet", {"url:missing": "false"}, {"vs1", "vs2", "vs3"}),
    ("Patient", {"_lastUpdated:missing": "true"}, set()),
    # --- compartment (search.html#compartments)
    ("Patient/{p1}/Observation", {}, {"ob1", "ob3"}),
    ("Patient/{p1}/Observation", {"code": f"{LOINC}|8480-6"}, {"ob1"}),
    ("Patient/{p2}/RiskAssessment", {}, {"ra2"}),
]


def _fill(text: str, ds: DataSet, base: str) -> str:
    names = {n: ds.id(n) for n in ("p1", "p2", "p3", "pr1", "o1", "o2")}
    return text.format(vs=ds.vs, run=ds.run, base=base, **names)


def _query(ds: DataSet, base: str, params: dict) -> list[tuple[str, str]]:
    pairs = [("_tag", f"{ds.tag}|t")]
    for key, value in params.items():
        for v in value if isinstance(value, list) else [value]:
            pairs.append((key, _fill(v, ds, base)))
    return pairs


def _names(client, ds: DataSet, path: str, pairs) -> tuple[list[str], dict]:
    resp = client.get("/" + path, params=pairs)
    assert resp.status_code == 200, resp.text
    bundle = resp.json()
    return [ds.name(e["resource"]["id"]) for e in bundle.get("entry", [])
            if e["search"]["mode"] == "match"], bundle


@pytest.mark.parametrize(("path", "params", "expected"), CASES,
                         ids=[f"{p}?{'&'.join(f'{k}={v}' for k, v in q.items())}"
                              for p, q, _ in CASES])
def test_search(client, data, path, params, expected):
    base = str(client.base_url).rstrip("/")
    got, bundle = _names(client, data, _fill(path, data, base), _query(data, base, params))
    if isinstance(expected, list):
        assert got == expected
    else:
        assert set(got) == expected and len(got) == len(expected)
    assert bundle.get("total") == len(expected)  # first page holds all: the count is free


@pytest.mark.parametrize("sort", ["family", "-birthdate", "-gender,family", "_lastUpdated"])
def test_sorted_paging_forward_and_back(client, data, sort):
    """Keyset paging with `_sort` visits every row once, in order, both ways."""
    base = str(client.base_url).rstrip("/")
    pairs = _query(data, base, {"_sort": sort})
    whole, _ = _names(client, data, "Patient", pairs)
    resp = client.get("/Patient", params=[*pairs, ("_count", "1")])
    pages, bundle = [], resp.json()
    while True:
        pages.append([data.name(e["resource"]["id"]) for e in bundle.get("entry", [])])
        nxt = [lnk["url"] for lnk in bundle["link"] if lnk["relation"] == "next"]
        if not nxt:
            break
        assert len(pages) < 10
        bundle = client.get(nxt[0]).json()
    assert [p[0] for p in pages] == whole and len(whole) == 3
    back = []
    while prev := [lnk["url"] for lnk in bundle["link"] if lnk["relation"] == "previous"]:
        bundle = client.get(prev[0]).json()
        back.append(data.name(bundle["entry"][0]["resource"]["id"]))
        assert len(back) < 10
    assert back == whole[:-1][::-1]


def test_links_do_not_echo_values_and_are_tamper_evident(client, data):
    pairs = [("_tag", f"{data.tag}|t"), ("identifier", f"{FNR}|111,{FNR}|222"), ("_count", "1")]
    bundle = client.get("/Patient", params=pairs).json()
    links = {lnk["relation"]: lnk["url"] for lnk in bundle["link"]}
    assert set(links) == {"self", "next"}
    for url in links.values():
        # The only parameter is the opaque token (which, being random-looking base64, may hold
        # any short digit run by chance: look for the values as parameters, not substrings).
        query = parse_qsl(urlsplit(url).query)
        assert [k for k, _ in query] == ["_page"]
        assert data.run not in url and FNR not in unquote(url)
    second = client.get(links["next"]).json()
    assert len(second["entry"]) == 1 and second["entry"][0]["resource"]["id"] == data.id("p2")
    token = links["next"].split("_page=", 1)[1]
    forged = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    resp = client.get("/Patient", params={"_page": forged})
    assert resp.status_code == 400
    # A token is bound to its path, and cannot be mixed with other parameters.
    assert client.get("/Observation", params={"_page": token}).status_code == 400
    assert client.get("/Patient", params={"_page": token, "gender": "male"}).status_code == 400


def test_totals(client, data, backend):
    scope = [("_tag", f"{data.tag}|t")]
    bundle = client.get("/Patient", params=[*scope, ("_count", "1"), ("_total", "accurate")]).json()
    assert bundle["total"] == 3 and len(bundle["entry"]) == 1
    bundle = client.get("/Patient", params=[*scope, ("_count", "1"), ("_total", "none")]).json()
    assert "total" not in bundle
    bundle = client.get("/Patient", params=[*scope, ("_total", "none")]).json()
    assert "total" not in bundle and len(bundle["entry"]) == 3
    bundle = client.get("/Patient", params=[*scope, ("_count", "1"), ("_total", "estimate")]).json()
    assert isinstance(bundle["total"], int)
    if backend == "sqlite":
        assert bundle["total"] == 3  # SQLite counts (up to a cap) instead of estimating


@pytest.mark.parametrize(("path", "params", "name"), [
    ("Patient", {"family:fuzzy": "x"}, "family"),
    ("Patient", {"_sort": "shoe-size"}, "shoe-size"),
    ("Patient", {"_sort": "identifier,shoe"}, "shoe"),
    ("Observation", {"subject.shoe-size": "x"}, "shoe-size"),
    ("Observation", {"status.name": "x"}, "status"),
    ("Observation", {"_has:Patient:shoe:family": "x"}, "shoe"),
    ("Observation", {"component-code-value-quantity": "8480-6"}, "component-code-value-quantity"),
    ("Observation", {"code:of-type": "a|b"}, "code"),
    ("Observation", {"code:in": "http://nowhere.test/vs"}, "http://nowhere.test/vs"),
    ("Observation", {"code:below": "x"}, "code"),
    ("Observation", {"value-quantity": "nan"}, "value-quantity"),
    ("Patient", {"_explain": "true"}, "_explain"),
    ("Patient", {"_page": "AAAA"}, "_page"),
    ("Practitioner/x/Observation", {}, "Practitioner"),
])
def test_refused_with_400_naming_the_parameter(client, path, params, name):
    resp = client.get("/" + path, params=params)
    assert resp.status_code == 400, resp.text
    assert name in resp.json()["issue"][0]["diagnostics"]


def test_explain_for_operators(client, data, monkeypatch):
    monkeypatch.setenv("AKSON_ENABLE_EXPLAIN", "1")
    resp = client.get("/Patient", params={"family": "oster", "_explain": "true"})
    assert resp.status_code == 200, resp.text
    outcome = resp.json()
    assert outcome["resourceType"] == "OperationOutcome"
    issue = outcome["issue"][0]
    assert issue["severity"] == "information" and issue["diagnostics"]


def test_scope_reaches_into_chains_and_has(tmp_path):
    """`scope` (the next issue's access policy) filters every resource a chain or `_has`
    passes through, inside the one statement; `extra` filters the root rows, totals included."""
    import asyncio

    from akson.fhir.search import parse
    from akson.fhir.searchparams import SearchParamRegistry
    from akson.store.database import connect
    from akson.store.migrate import upgrade
    from akson.store.repository import ResourceStore
    from akson.store.search_sql import Where

    url = f"sqlite:///{tmp_path / 'scope.db'}"
    upgrade(url)
    ds = DataSet("scope")
    registry = SearchParamRegistry.default()

    def hide_p1(alias: str, res_type: str) -> Where:
        where = Where()
        if res_type == "Patient":
            where.add(f"{alias}.res_id <> %s", ds.id("p1"))
        return where

    async def run() -> dict[str, set[str]]:
        db = connect(url)
        await db.open()
        store = ResourceStore(db, registry)
        async with store.session(write=True) as s:
            for res in ds.resources():
                await s.update(res["resourceType"], res["id"], res)
        out = {}
        async with store.session(write=False) as s:
            for label, res_type, pairs, kwargs in [
                ("chain", "Observation", [("subject:Patient.family", "oster,muller")], {}),
                ("has", "Organization", [("_has:Patient:organization:name", "oster,muller")], {}),
                ("root", "Patient", [("_total", "accurate")], {"extra": hide_p1("r", "Patient")}),
            ]:
                page = await s.search(parse(res_type, pairs, registry=registry),
                                      scope=hide_p1, **kwargs)
                out[label] = {ds.name(i.res_id) for i in page.items} | {f"total={page.total}"}
        await db.close()
        return out

    got = asyncio.run(run())
    assert got["chain"] == {"ob2", "total=1"}
    assert got["has"] == {"o2", "total=1"}
    assert got["root"] == {"p2", "p3", "total=2"}
