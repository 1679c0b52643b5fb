"""Basic search (https://hl7.org/fhir/R4/search.html): parameter types, prefixes, modifiers, paging.

Every test makes its own identifier system, so `identifier=<system>|` scopes a search to the
resources that test created, whatever else the shared database holds.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta


def _system() -> str:
    return f"https://akson.test/sid/search/{uuid.uuid4().hex}"


def _make(client, system: str, **fields) -> str:
    body = {"resourceType": "Patient",
            "identifier": [{"system": system, "value": uuid.uuid4().hex}], **fields}
    resp = client.post("/Patient", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def _ids(client, path: str = "/Patient", **params) -> set[str]:
    resp = client.get(path, params=params)
    assert resp.status_code == 200, resp.text
    bundle = resp.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return {e["resource"]["id"] for e in bundle.get("entry", [])
            if e.get("search", {}).get("mode", "match") == "match"}


def test_search_by_id(client):
    system = _system()
    a, b, _ = (_make(client, system) for _ in range(3))
    assert _ids(client, _id=a) == {a}
    assert _ids(client, _id=f"{a},{b}") == {a, b}
    assert _ids(client, _id=uuid.uuid4().hex) == set()


def test_search_excludes_deleted(client):
    system = _system()
    a, b = _make(client, system), _make(client, system)
    client.delete(f"/Patient/{a}")
    assert _ids(client, identifier=f"{system}|") == {b}


def test_last_updated_prefixes(client):
    system = _system()
    first = _make(client, system)
    lu = client.get(f"/Patient/{first}").json()["meta"]["lastUpdated"]
    second = _make(client, system)
    scope = {"identifier": f"{system}|"}
    assert _ids(client, **scope, _lastUpdated=f"ge{lu}") == {first, second}
    assert _ids(client, **scope, _lastUpdated=f"gt{lu}") == {second}
    assert _ids(client, **scope, _lastUpdated=f"lt{lu}") == set()
    assert _ids(client, **scope, _lastUpdated=f"le{lu}") == {first}
    day = lu[:10]
    assert first in _ids(client, **scope, _lastUpdated=day) | \
        _ids(client, **scope, _lastUpdated=f"ap{day}")
    future = (datetime.now() + timedelta(days=2)).strftime("%Y-%m-%d")
    assert _ids(client, **scope, _lastUpdated=f"gt{future}") == set()
    assert _ids(client, **scope, _lastUpdated=f"lt{future}") == {first, second}


def test_token_forms(client):
    system, other = _system(), _system()
    code = uuid.uuid4().hex
    with_system = client.post("/Patient", json={"resourceType": "Patient", "identifier": [
        {"system": system, "value": code}]}).json()["id"]
    no_system = client.post("/Patient", json={"resourceType": "Patient", "identifier": [
        {"value": code}, {"system": other, "value": "x"}]}).json()["id"]
    other_system = client.post("/Patient", json={"resourceType": "Patient", "identifier": [
        {"system": other, "value": code}]}).json()["id"]
    assert _ids(client, identifier=f"{system}|{code}") == {with_system}
    assert _ids(client, identifier=f"|{code}") == {no_system}
    assert _ids(client, identifier=code) == {with_system, no_system, other_system}
    assert _ids(client, identifier=f"{other}|") == {no_system, other_system}
    assert _ids(client, identifier=f"{system}|{code},{other}|{code}") == {with_system, other_system}


def test_token_not(client):
    system = _system()
    male = _make(client, system, gender="male")
    female = _make(client, system, gender="female")
    unknown = _make(client, system)
    scope = {"identifier": f"{system}|"}
    assert _ids(client, **scope, gender="male") == {male}
    assert _ids(client, **scope, **{"gender:not": "male"}) == {female, unknown}


def test_string_search(client):
    system = _system()
    soreng = _make(client, system, name=[{"family": "Søreng", "given": ["Åse"]}])
    sorensen = _make(client, system, name=[{"family": "Sørensen", "given": ["Per"]}])
    aerlig = _make(client, system, name=[{"family": "Ærlig"}])
    scope = {"identifier": f"{system}|"}
    assert _ids(client, **scope, family="sore") == {soreng, sorensen}
    assert _ids(client, **scope, family="SØRENG") == {soreng}
    assert _ids(client, **scope, family="soreng") == {soreng}
    assert _ids(client, **scope, family="aer") == {aerlig}
    assert _ids(client, **scope, given="ase") == {soreng}
    assert _ids(client, **scope, name="per") == {sorensen}
    assert _ids(client, **scope, family="reng") == set()  # default is a prefix match
    assert _ids(client, **scope, **{"family:exact": "Søreng"}) == {soreng}
    assert _ids(client, **scope, **{"family:exact": "søreng"}) == set()
    assert _ids(client, **scope, **{"family:exact": "Søre"}) == set()
    assert _ids(client, **scope, **{"family:contains": "ren"}) == {soreng, sorensen}
    assert _ids(client, **scope, **{"family:contains": "RLI"}) == {aerlig}
    assert _ids(client, **scope, family="søreng,ærlig") == {soreng, aerlig}


def test_string_contains_treats_wildcards_literally(client):
    system = _system()
    plain = _make(client, system, name=[{"family": "Hansen"}])
    scope = {"identifier": f"{system}|"}
    assert _ids(client, **scope, **{"family:contains": "%"}) == set()
    assert _ids(client, **scope, **{"family:contains": "_"}) == set()
    assert _ids(client, **scope, **{"family:contains": "ans"}) == {plain}


def test_date_prefixes_on_a_date(client):
    system = _system()
    jan = _make(client, system, birthDate="1980-01-01")
    jun = _make(client, system, birthDate="1980-06-15")
    mar = _make(client, system, birthDate="1981-03-01")
    s = {"identifier": f"{system}|"}
    assert _ids(client, **s, birthdate="1980") == {jan, jun}
    assert _ids(client, **s, birthdate="eq1980-06") == {jun}
    assert _ids(client, **s, birthdate="1980-06-15") == {jun}
    assert _ids(client, **s, birthdate="ne1980") == {mar}
    assert _ids(client, **s, birthdate="gt1980-06-15") == {mar}
    assert _ids(client, **s, birthdate="lt1980-06-15") == {jan}
    assert _ids(client, **s, birthdate="ge1980-06-15") == {jun, mar}
    assert _ids(client, **s, birthdate="le1980-06-15") == {jan, jun}
    assert _ids(client, **s, birthdate="sa1980") == {mar}
    assert _ids(client, **s, birthdate="eb1981") == {jan, jun}
    assert jun in _ids(client, **s, birthdate="ap1980-06-15")
    assert _ids(client, **s, birthdate="ap1950-01-01") == set()
    # AND of two clauses: a range
    resp = client.get("/Patient", params=[("identifier", f"{system}|"),
                                           ("birthdate", "ge1980-02-01"),
                                           ("birthdate", "lt1981-01-01")])
    assert {e["resource"]["id"] for e in resp.json()["entry"]} == {jun}


def test_date_precisions_on_a_datetime(client):
    system = _system()
    obs = {"resourceType": "Observation", "status": "final",
           "identifier": [{"system": system, "value": "1"}], "code": {"text": "t"},
           "effectiveDateTime": "2020-05-03T10:15:30+02:00"}
    oid = client.post("/Observation", json=obs).json()["id"]
    s = {"identifier": f"{system}|"}
    for value in ("2020", "2020-05", "2020-05-03", "2020-05-03T10:15+02:00",
                  "2020-05-03T08:15:30Z", "ge2020-05-03T08:15:30Z", "le2020-05-03T08:15:30Z",
                  "gt2020-05-03T08:15:29Z", "lt2020-05-03T08:15:31Z"):
        assert _ids(client, "/Observation", **s, date=value) == {oid}, value
    for value in ("2019", "2020-06", "2020-05-04", "gt2020-05-03T08:15:30Z",
                  "lt2020-05-03T08:15:30Z", "2020-05-03T10:15Z"):
        assert _ids(client, "/Observation", **s, date=value) == set(), value


def test_malformed_date_is_400(client):
    resp = client.get("/Patient", params={"birthdate": "1980-13-45"})
    assert resp.status_code == 400
    assert resp.json()["resourceType"] == "OperationOutcome"


def test_reference_forms(client):
    system = _system()
    pid = _make(client, system)
    other = _make(client, system)
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "t"},
           "identifier": [{"system": system, "value": "1"}],
           "subject": {"reference": f"Patient/{pid}"}}
    oid = client.post("/Observation", json=obs).json()["id"]
    base = str(client.base_url).rstrip("/")
    for params in ({"subject": f"Patient/{pid}"}, {"subject": pid},
                   {"subject": f"{base}/Patient/{pid}"}, {"subject:Patient": pid},
                   {"patient": pid}, {"patient": f"Patient/{pid}"}):
        assert _ids(client, "/Observation", **params) == {oid}, params
    assert _ids(client, "/Observation", subject=f"Patient/{other}") == set()
    assert _ids(client, "/Observation", subject=f"Group/{pid}") == set()
    assert _ids(client, "/Observation", **{"subject:Group": pid}) == set()


def test_paging_visits_everything_exactly_once(client):
    system = _system()
    made = {_make(client, system) for _ in range(7)}
    resp = client.get("/Patient", params={"identifier": f"{system}|", "_count": "3"})
    pages = []
    while True:
        assert resp.status_code == 200, resp.text
        bundle = resp.json()
        pages.append([e["resource"]["id"] for e in bundle.get("entry", [])])
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not nxt:
            break
        assert len(pages) < 10
        resp = client.get(nxt[0])
    seen = [rid for page in pages for rid in page]
    assert len(seen) == len(set(seen)) == 7
    assert set(seen) == made
    assert [len(p) for p in pages] == [3, 3, 1]
    # ... and back again with `previous`
    back = []
    bundle = resp.json()
    while True:
        prev = [link["url"] for link in bundle["link"] if link["relation"] == "previous"]
        if not prev:
            break
        assert len(back) < 10
        bundle = client.get(prev[0]).json()
        back.append([e["resource"]["id"] for e in bundle.get("entry", [])])
    assert back == [pages[1], pages[0]]


def test_count_zero_and_total(client):
    system = _system()
    for _ in range(3):
        _make(client, system)
    bundle = client.get("/Patient", params={"identifier": f"{system}|", "_count": "0"}).json()
    assert bundle["total"] == 3
    assert not bundle.get("entry")
    bundle = client.get("/Patient", params={"identifier": f"{system}|", "_count": "1",
                                            "_total": "accurate"}).json()
    assert bundle["total"] == 3 and len(bundle["entry"]) == 1


def test_self_link_and_full_urls(client):
    system = _system()
    pid = _make(client, system)
    bundle = client.get("/Patient", params={"identifier": f"{system}|"}).json()
    assert any(link["relation"] == "self" for link in bundle["link"])
    base = str(client.base_url).rstrip("/")
    assert bundle["entry"][0]["fullUrl"] == f"{base}/Patient/{pid}"
    assert bundle["entry"][0]["search"]["mode"] == "match"


def test_unknown_parameter_is_400(client):
    resp = client.get("/Patient", params={"shoe-size": "44"})
    assert resp.status_code == 400
    outcome = resp.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "shoe-size" in outcome["issue"][0]["diagnostics"]
    assert client.get("/Patient", params={"family:fuzzy": "x"}).status_code == 400


def test_unknown_parameter_lenient_is_reported(client):
    system = _system()
    pid = _make(client, system)
    resp = client.get("/Patient", params={"identifier": f"{system}|", "shoe-size": "44"},
                      headers={"Prefer": "handling=lenient"})
    assert resp.status_code == 200, resp.text
    entries = resp.json()["entry"]
    assert [e["resource"]["id"] for e in entries if e["search"]["mode"] == "match"] == [pid]
    outcomes = [e["resource"] for e in entries if e["search"]["mode"] == "outcome"]
    assert outcomes and outcomes[0]["resourceType"] == "OperationOutcome"
    assert "shoe-size" in str(outcomes[0])


def test_post_search_with_form_body(client):
    system = _system()
    pid = _make(client, system, gender="female")
    _make(client, system, gender="male")
    resp = client.post("/Patient/_search",
                       content=f"identifier={system}|&gender=female".encode(),
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 200, resp.text
    bundle = resp.json()
    assert [e["resource"]["id"] for e in bundle["entry"]] == [pid]
    # URL parameters and body parameters combine.
    resp = client.post("/Patient/_search", params={"gender": "male"},
                       data={"identifier": f"{system}|"})
    assert resp.status_code == 200
    assert len(resp.json()["entry"]) == 1
    assert resp.json()["entry"][0]["resource"]["gender"] == "male"


def test_post_search_paging_links_work(client):
    system = _system()
    made = {_make(client, system) for _ in range(3)}
    resp = client.post("/Patient/_search", data={"identifier": f"{system}|", "_count": "2"})
    bundle = resp.json()
    seen = [e["resource"]["id"] for e in bundle["entry"]]
    nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
    assert nxt
    bundle = client.get(nxt[0]).json()
    seen += [e["resource"]["id"] for e in bundle.get("entry", [])]
    assert sorted(seen) == sorted(made)


def test_search_in_bundle_entries_have_no_history_fields(client):
    system = _system()
    _make(client, system)
    bundle = client.get("/Patient", params={"identifier": f"{system}|"}).json()
    assert "request" not in bundle["entry"][0]


def test_string_prefix_ending_in_highest_code_points(client):
    system = _system()
    top = _make(client, system, name=[{"family": "Zz\U0010ffffa"}])
    edge = _make(client, system, name=[{"family": "Zz\ud7ffb"}])
    scope = {"identifier": f"{system}|"}
    assert _ids(client, **scope, family="zz\U0010ffff") == {top}
    assert _ids(client, **scope, family="zz\ud7ff") == {edge}
    assert _ids(client, **scope, family="zz") == {top, edge}
