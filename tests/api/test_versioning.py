"""Version-aware interactions: ETag, Last-Modified, Location, If-Match, Prefer (R4 http.html)."""

from __future__ import annotations

import uuid
from email.utils import parsedate_to_datetime

SYS = "https://akson.test/sid/versioning"


def _patient(**extra) -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": SYS, "value": uuid.uuid4().hex}],
            **extra}


def test_etag_last_modified_location_on_create(client):
    resp = client.post("/Patient", json=_patient())
    assert resp.status_code == 201
    body = resp.json()
    assert resp.headers["etag"] == 'W/"1"'
    modified = parsedate_to_datetime(resp.headers["last-modified"])
    assert modified.tzinfo is not None
    assert resp.headers["location"] == f"{str(client.base_url).rstrip('/')}/Patient/{body['id']}/_history/1"


def test_versions_increase_and_meta_matches_etag(client):
    rid = client.post("/Patient", json=_patient()).json()["id"]
    for n in (2, 3, 4):
        resp = client.put(f"/Patient/{rid}", json={**_patient(), "id": rid})
        assert resp.headers["etag"] == f'W/"{n}"'
        assert resp.json()["meta"]["versionId"] == str(n)
    assert client.get(f"/Patient/{rid}").headers["etag"] == 'W/"4"'


def test_if_match_current_version_succeeds(client):
    rid = client.post("/Patient", json=_patient()).json()["id"]
    resp = client.put(f"/Patient/{rid}", json={**_patient(), "id": rid},
                      headers={"If-Match": 'W/"1"'})
    assert resp.status_code == 200
    assert resp.headers["etag"] == 'W/"2"'


def test_if_match_stale_version_is_412_and_changes_nothing(client):
    rid = client.post("/Patient", json=_patient(gender="male")).json()["id"]
    client.put(f"/Patient/{rid}", json={**_patient(gender="male"), "id": rid})
    resp = client.put(f"/Patient/{rid}", json={**_patient(gender="female"), "id": rid},
                      headers={"If-Match": 'W/"1"'})
    assert resp.status_code == 412
    assert resp.json()["resourceType"] == "OperationOutcome"
    current = client.get(f"/Patient/{rid}")
    assert current.headers["etag"] == 'W/"2"'
    assert current.json()["gender"] == "male"


def test_if_match_on_missing_resource_is_412(client):
    rid = uuid.uuid4().hex
    resp = client.put(f"/Patient/{rid}", json={**_patient(), "id": rid},
                      headers={"If-Match": 'W/"1"'})
    assert resp.status_code in (404, 412)
    assert client.get(f"/Patient/{rid}").status_code == 404


def test_if_match_garbage_is_400(client):
    rid = client.post("/Patient", json=_patient()).json()["id"]
    resp = client.put(f"/Patient/{rid}", json={**_patient(), "id": rid},
                      headers={"If-Match": "nonsense"})
    assert resp.status_code in (400, 412)


def test_if_none_match_on_read_gives_304(client):
    rid = client.post("/Patient", json=_patient()).json()["id"]
    resp = client.get(f"/Patient/{rid}", headers={"If-None-Match": 'W/"1"'})
    assert resp.status_code == 304
    assert client.get(f"/Patient/{rid}", headers={"If-None-Match": 'W/"9"'}).status_code == 200


def test_prefer_return_minimal(client):
    resp = client.post("/Patient", json=_patient(), headers={"Prefer": "return=minimal"})
    assert resp.status_code == 201
    assert resp.content == b""
    assert resp.headers["etag"] == 'W/"1"'
    rid = resp.headers["location"].split("/Patient/")[1].split("/")[0]
    put = client.put(f"/Patient/{rid}", json={**_patient(), "id": rid},
                     headers={"Prefer": "return=minimal"})
    assert put.status_code == 200 and put.content == b""
    assert put.headers["etag"] == 'W/"2"'


def test_prefer_return_representation(client):
    resp = client.post("/Patient", json=_patient(gender="other"),
                       headers={"Prefer": "return=representation"})
    assert resp.status_code == 201
    body = resp.json()
    assert body["resourceType"] == "Patient" and body["gender"] == "other"
    assert body["meta"]["versionId"] == "1"


def test_prefer_return_operation_outcome(client):
    resp = client.post("/Patient", json=_patient(), headers={"Prefer": "return=OperationOutcome"})
    assert resp.status_code == 201
    assert resp.json()["resourceType"] == "OperationOutcome"
    assert resp.headers["location"]


def test_last_modified_matches_meta(client):
    resp = client.post("/Patient", json=_patient())
    from datetime import datetime

    meta = datetime.fromisoformat(resp.json()["meta"]["lastUpdated"].replace("Z", "+00:00"))
    header = parsedate_to_datetime(resp.headers["last-modified"])
    assert abs((meta - header).total_seconds()) < 1


def test_prefer_minimal_does_not_empty_reads(client):
    rid = client.post("/Patient", json=_patient()).json()["id"]
    resp = client.get(f"/Patient/{rid}", headers={"Prefer": "return=minimal"})
    assert resp.status_code == 200 and resp.json()["id"] == rid
    resp = client.post("", headers={"Prefer": "return=minimal"}, json={
        "resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": _patient(), "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "GET", "url": f"Patient/{rid}"}}]})
    assert resp.status_code == 200, resp.text
    out = resp.json()["entry"]
    assert "resource" not in out[0]
    assert out[1]["resource"]["id"] == rid


def test_prefer_minimal_on_conditional_create_match(client):
    body = _patient()
    ident = body["identifier"][0]["value"]
    rid = client.post("/Patient", json=body).json()["id"]
    resp = client.post("/Patient", json=body, headers={
        "Prefer": "return=minimal", "If-None-Exist": f"identifier={SYS}|{ident}"})
    assert resp.status_code == 200
    assert resp.content == b""
    assert rid in resp.headers["location"]
