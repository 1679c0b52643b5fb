"""Bad input yields a 4xx OperationOutcome, never a 500 (ARCHITECTURE.md, Principle 5)."""

from __future__ import annotations

import uuid

import pytest

SYS = "https://akson.test/sid/errors"
JSON = {"Content-Type": "application/fhir+json"}


def _outcome(resp, status: int | tuple[int, ...]) -> dict:
    statuses = status if isinstance(status, tuple) else (status,)
    assert resp.status_code in statuses, (resp.status_code, resp.text[:300])
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"] and body["issue"][0]["severity"] in ("error", "fatal")
    return body


def _patient(**extra) -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": SYS, "value": uuid.uuid4().hex}],
            **extra}


@pytest.mark.parametrize("raw", [b"{", b"not json", b'{"resourceType": "Patient",}',
                                 b"\xff\xfe", b'{"resourceType": NaN}', b"[1,2]", b'"Patient"',
                                 b"null"])
def test_malformed_json_is_400(client, raw):
    _outcome(client.post("/Patient", content=raw, headers=JSON), 400)


def test_empty_body_is_400(client):
    _outcome(client.post("/Patient", content=b"", headers=JSON), 400)
    _outcome(client.put("/Patient/abc", content=b"", headers=JSON), 400)


def test_wrong_resource_type_for_url(client):
    _outcome(client.post("/Patient", json={"resourceType": "Observation"}), 400)
    _outcome(client.put("/Patient/abc", json={"resourceType": "Observation", "id": "abc"}), 400)
    _outcome(client.post("/Patient", json={"gender": "male"}), 400)


def test_body_id_differs_from_url_id(client):
    rid = client.post("/Patient", json=_patient()).json()["id"]
    body = _outcome(client.put(f"/Patient/{rid}", json={**_patient(), "id": "other"}), 400)
    assert "id" in str(body)
    _outcome(client.put(f"/Patient/{rid}", json=_patient()), 400)  # no id at all


@pytest.mark.parametrize("bad_id", ["a" * 65, "with space", "bad$id", "ÆØÅ", "a_b"])
def test_invalid_id_in_url(client, bad_id):
    _outcome(client.get(f"/Patient/{bad_id}"), (400, 404))
    _outcome(client.put(f"/Patient/{bad_id}", json={**_patient(), "id": bad_id}), (400, 404))
    _outcome(client.delete(f"/Patient/{bad_id}"), (400, 404))


def test_invalid_resource_is_422_naming_the_element(client):
    body = _outcome(client.post("/Patient", json=_patient(birthDate="31.12.1980")), 422)
    assert any("Patient.birthDate" in e for i in body["issue"] for e in i.get("expression", []))
    body = _outcome(client.post("/Patient", json=_patient(shoeSize=44)), 422)
    assert any("Patient.shoeSize" in e for i in body["issue"] for e in i.get("expression", []))


@pytest.mark.xfail(strict=True, reason="akson.fhir.validation does not enforce min=1 "
                   "cardinality: an Observation without status is accepted")
def test_missing_required_element_is_422(client):
    obs = {"resourceType": "Observation", "code": {"text": "x"}}  # status is 1..1
    body = _outcome(client.post("/Observation", json=obs), 422)
    assert any("Observation.status" in e for i in body["issue"] for e in i.get("expression", []))


def test_invalid_resource_on_update_is_422(client):
    rid = client.post("/Patient", json=_patient()).json()["id"]
    _outcome(client.put(f"/Patient/{rid}", json={**_patient(gender="yes"), "id": rid}), 422)
    assert client.get(f"/Patient/{rid}").headers["etag"] == 'W/"1"'


def test_oversized_body_is_413(client):
    big = b'{"resourceType":"Patient","text":{"status":"generated","div":"' + \
        b"x" * (2 * 1024 * 1024 + 10) + b'"}}'
    _outcome(client.post("/Patient", content=big, headers=JSON), 413)


def test_oversized_body_without_content_length_is_413(client):
    def chunks():
        yield b'{"resourceType":"Patient","text":{"status":"generated","div":"'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}}'

    _outcome(client.post("/Patient", content=chunks(), headers=JSON), 413)


def test_deeply_nested_json_is_400(client):
    depth = 5000
    raw = b'{"resourceType":"Patient","extension":' + b"[" * depth + b"]" * depth + b"}"
    _outcome(client.post("/Patient", content=raw, headers=JSON), (400, 422))
    raw = b'{"resourceType":"Patient","contained":[' + b'{"a":' * 200 + b"1" + b"}" * 200 + b"]}"
    _outcome(client.post("/Patient", content=raw, headers=JSON), (400, 422))


HOSTILE = [
    "'; DROP TABLE resource; --",
    "\" OR 1=1 --",
    "x') OR ('1'='1",
    "\x00",
    "a\x00b",
    "%",
    "_",
    "\\",
    "a" * 10_000,
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 🙂",
    "\u202e\u200b",
    "x\U0010ffff",
    "x\ud7ff",
    "\uffff",
    "|||",
    "\\,\\|\\$",
]


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
@pytest.mark.parametrize("param", ["family", "family:exact", "family:contains", "identifier",
                                   "_id", "general-practitioner", "birthdate", "gender:not",
                                   "_lastUpdated"])
def test_hostile_search_values_never_500(client, param, value):
    resp = client.get("/Patient", params={param: value})
    assert resp.status_code < 500, (resp.status_code, resp.text[:300])
    assert resp.status_code in (200, 400), resp.status_code
    body = resp.json()
    if resp.status_code == 200:
        assert body["resourceType"] == "Bundle"
        assert not [e for e in body.get("entry", []) if e["search"]["mode"] == "match"] or \
            param == "gender:not"
    else:
        assert body["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("params", [
    {"_count": "99999999999999999999999"}, {"_count": "-1"}, {"_count": "1.5"},
    {"_cursor": "99999999999999999999999"}, {"_cursor": "-99999999999999999999999"},
    {"_total": "x"}, {"\x00": "1"}, {"family:": "x"}, {":": "x"}, {"": "x"},
    {"birthdate": "ge"}, {"birthdate": "2020-02-30"}, {"birthdate": "99999-01-01"},
    {"_lastUpdated": "gt10000-01-01"}, {"general-practitioner:Patient": "x"},
    {"family:missing": "maybe"}, {"identifier": ","}, {"gender": "male,"},
])
def test_hostile_result_params_never_500(client, params):
    resp = client.get("/Patient", params=params)
    assert resp.status_code in (200, 400), (resp.status_code, resp.text[:300])


@pytest.mark.parametrize("query", ["family=%FF%FE", "identifier=%C0%80", "_id=%ED%A0%80",
                                   "family=%", "family=%zz", "family=a%00b", "%FF=1"])
def test_invalid_utf8_and_escapes_in_query_never_500(client, query):
    resp = client.get(f"{client.base_url}Patient?{query}")
    assert resp.status_code in (200, 400), (resp.status_code, resp.text[:300])


def test_hostile_history_params_never_500(client):
    for params in ({"_since": "\x00"}, {"_count": "9" * 30}, {"_cursor": "9" * 30},
                   {"_since": "10000-01-01"}):
        resp = client.get("/_history", params=params)
        assert resp.status_code in (200, 400), (params, resp.status_code, resp.text[:300])


def test_hostile_conditional_headers_never_500(client):
    for cond in ("identifier=%00", "identifier=%FF%FE", "identifier=" + "a" * 10_000, "%%%", "=", "_id='",
                 "Patient?", "?"):
        resp = client.post("/Patient", json=_patient(), headers={"If-None-Exist": cond})
        assert resp.status_code in (200, 201, 400, 412), (cond, resp.status_code, resp.text)


def test_hostile_path_segments_never_500(client):
    for path in ("/Patient/%00", "/Patient/..%2F..%2Fetc", "/Patient/a/_history/%00",
                 "/Patient/a/_history/99999999999999999999999", "/%F0%9F%99%82",
                 "/Patient/a/b/c/d/e", "/Patient/" + "a" * 5000):
        resp = client.get(path)
        assert 400 <= resp.status_code < 500, (path, resp.status_code, resp.text[:200])


def test_unknown_resource_type_is_404(client):
    _outcome(client.get("/Shoe"), 404)
    _outcome(client.get("/Shoe/1"), 404)
    _outcome(client.post("/Shoe", json={"resourceType": "Shoe"}), 404)
    _outcome(client.get("/patient"), 404)


def test_unsupported_method_is_405(client):
    _outcome(client.request("PATCH", "/Patient", json=[]), 405)
    resp = client.post("/Patient/abc", json=_patient())
    _outcome(resp, 405)
    assert "allow" in resp.headers
    _outcome(client.put("/Patient", json=_patient()), (400, 405))
    _outcome(client.request("TRACE", "/Patient/abc"), 405)
    _outcome(client.delete(""), 405)


def test_invalid_patch_documents(client):
    rid = client.post("/Patient", json=_patient()).json()["id"]
    patch_json = {"Content-Type": "application/json-patch+json"}
    _outcome(client.patch(f"/Patient/{rid}", content=b"{", headers=patch_json), 400)
    _outcome(client.patch(f"/Patient/{rid}", json={"op": "add"}, headers=patch_json), (400, 422))
    _outcome(client.patch(f"/Patient/{rid}", json=[{"op": "remove", "path": "/nope"}],
                          headers=patch_json), (400, 422))
    _outcome(client.patch(f"/Patient/{rid}", json=[{"op": "replace", "path": "/id",
                                                    "value": "x"}], headers=patch_json), 422)
    _outcome(client.patch(f"/Patient/{rid}", json={"resourceType": "Patient"},
                          headers={"Content-Type": "application/fhir+json"}), (400, 422))
    assert client.get(f"/Patient/{rid}").headers["etag"] == 'W/"1"'


@pytest.mark.parametrize("family", ["a\x00b", "\x00", "'; DROP TABLE resource; --",
                                    "𝔘𝔫𝔦 🙂", "a" * 50_000, "\u202e"])
def test_hostile_strings_in_resources_never_500(client, family):
    system = f"{SYS}/{uuid.uuid4().hex}"
    body = {"resourceType": "Patient", "identifier": [{"system": system, "value": family}],
            "name": [{"family": family}]}
    resp = client.post("/Patient", json=body)
    assert resp.status_code in (201, 400, 422), (resp.status_code, resp.text[:300])
    if resp.status_code == 201:
        rid = resp.json()["id"]
        assert client.get(f"/Patient/{rid}").json()["name"][0]["family"] == family
        found = client.get("/Patient", params={"identifier": f"{system}|",
                                               "family:exact": family})
        assert found.status_code in (200, 400)
        if found.status_code == 200:
            assert [e["resource"]["id"] for e in found.json()["entry"]] == [rid]


@pytest.mark.parametrize("lost", ["DeadlockDetected", "SerializationFailure", "UniqueViolation"])
def test_a_write_that_lost_to_a_concurrent_one_is_503_with_retry_after(lost: str) -> None:
    """The database broke a deadlock (two writers locking the same rows or chain targets in
    opposite orders) or another writer got there first: the transaction was rolled back whole,
    so the client is told to retry, not given a 500."""
    import psycopg

    from akson.api.errors import error_response

    resp = error_response(getattr(psycopg.errors, lost)("deadlock detected"))
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    assert isinstance(resp.body, dict)
    issue = resp.body["issue"][0]
    assert issue["code"] == "transient" and "Retry" in issue["diagnostics"]
    assert "deadlock" not in issue["diagnostics"]  # the database's words stay in the server
