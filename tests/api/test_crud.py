"""read, vread, create, update, delete and patch (https://hl7.org/fhir/R4/http.html)."""

from __future__ import annotations

import json
import uuid

SYS = "https://akson.test/sid/crud"


def _uid() -> str:
    return uuid.uuid4().hex


def _patient(ident: str, **extra) -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": SYS, "value": ident}], **extra}


def test_create_assigns_server_id_and_ignores_body_id(client):
    resp = client.post("/Patient", json={**_patient(_uid()), "id": "client-chosen"})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["id"] != "client-chosen"
    assert body["meta"]["versionId"] == "1"
    assert "lastUpdated" in body["meta"]
    assert resp.headers["location"].endswith(f"/Patient/{body['id']}/_history/1")
    assert client.get(f"/Patient/{body['id']}").json()["id"] == body["id"]


def test_read_returns_current_version_with_headers(client):
    rid = client.post("/Patient", json=_patient(_uid(), gender="male")).json()["id"]
    resp = client.get(f"/Patient/{rid}")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/fhir+json")
    assert resp.headers["etag"] == 'W/"1"'
    assert "GMT" in resp.headers["last-modified"]
    assert resp.json()["gender"] == "male"


def test_read_unknown_is_404_outcome(client):
    resp = client.get(f"/Patient/{_uid()}")
    assert resp.status_code == 404
    assert resp.json()["resourceType"] == "OperationOutcome"


def test_vread_each_version(client):
    rid = client.post("/Patient", json=_patient(_uid(), gender="male")).json()["id"]
    put = client.put(f"/Patient/{rid}", json={**_patient(_uid(), gender="female"), "id": rid})
    assert put.status_code == 200, put.text
    assert client.get(f"/Patient/{rid}/_history/1").json()["gender"] == "male"
    v2 = client.get(f"/Patient/{rid}/_history/2")
    assert v2.status_code == 200 and v2.json()["gender"] == "female"
    assert v2.headers["etag"] == 'W/"2"'
    assert client.get(f"/Patient/{rid}/_history/3").status_code == 404
    assert client.get(f"/Patient/{rid}/_history/x").status_code == 404


def test_update_existing_returns_200_and_new_version(client):
    rid = client.post("/Patient", json=_patient(_uid())).json()["id"]
    resp = client.put(f"/Patient/{rid}", json={**_patient(_uid()), "id": rid, "active": True})
    assert resp.status_code == 200, resp.text
    assert resp.headers["etag"] == 'W/"2"'
    assert resp.json()["meta"]["versionId"] == "2"
    assert client.get(f"/Patient/{rid}").json()["active"] is True


def test_update_as_create_with_client_id(client):
    rid = f"client-{_uid()[:20]}"
    resp = client.put(f"/Patient/{rid}", json={**_patient(_uid()), "id": rid})
    assert resp.status_code == 201, resp.text
    assert resp.headers["location"].endswith(f"/Patient/{rid}/_history/1")
    assert resp.headers["etag"] == 'W/"1"'
    assert client.get(f"/Patient/{rid}").status_code == 200


def test_delete_then_read_is_410_and_history_kept(client):
    rid = client.post("/Patient", json=_patient(_uid())).json()["id"]
    resp = client.delete(f"/Patient/{rid}")
    assert resp.status_code in (200, 204)
    gone = client.get(f"/Patient/{rid}")
    assert gone.status_code == 410
    assert gone.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/Patient/{rid}/_history/1").status_code == 200
    assert client.get(f"/Patient/{rid}/_history/2").status_code == 410


def test_delete_missing_and_repeated_delete_are_fine(client):
    assert client.delete(f"/Patient/{_uid()}").status_code in (200, 204)
    rid = client.post("/Patient", json=_patient(_uid())).json()["id"]
    assert client.delete(f"/Patient/{rid}").status_code in (200, 204)
    assert client.delete(f"/Patient/{rid}").status_code in (200, 204)


def test_update_after_delete_recreates(client):
    rid = client.post("/Patient", json=_patient(_uid())).json()["id"]
    client.delete(f"/Patient/{rid}")
    resp = client.put(f"/Patient/{rid}", json={**_patient(_uid()), "id": rid})
    assert resp.status_code == 201, resp.text
    assert resp.headers["etag"] == 'W/"3"'
    assert client.get(f"/Patient/{rid}").status_code == 200


def test_head_read(client):
    rid = client.post("/Patient", json=_patient(_uid())).json()["id"]
    resp = client.head(f"/Patient/{rid}")
    assert resp.status_code == 200
    assert resp.headers["etag"] == 'W/"1"'
    assert resp.content == b""


def test_json_patch(client):
    rid = client.post("/Patient", json=_patient(_uid(), gender="male")).json()["id"]
    ops = [{"op": "replace", "path": "/gender", "value": "female"},
           {"op": "add", "path": "/active", "value": True}]
    resp = client.patch(f"/Patient/{rid}", content=json.dumps(ops),
                        headers={"Content-Type": "application/json-patch+json",
                                 "If-Match": 'W/"1"'})
    assert resp.status_code == 200, resp.text
    assert resp.headers["etag"] == 'W/"2"'
    body = client.get(f"/Patient/{rid}").json()
    assert body["gender"] == "female" and body["active"] is True


def test_json_patch_if_match_mismatch_is_412(client):
    rid = client.post("/Patient", json=_patient(_uid())).json()["id"]
    ops = [{"op": "add", "path": "/active", "value": True}]
    resp = client.patch(f"/Patient/{rid}", json=ops,
                        headers={"Content-Type": "application/json-patch+json",
                                 "If-Match": 'W/"7"'})
    assert resp.status_code == 412
    assert client.get(f"/Patient/{rid}").headers["etag"] == 'W/"1"'


def test_json_patch_failing_test_op_changes_nothing(client):
    rid = client.post("/Patient", json=_patient(_uid(), gender="male")).json()["id"]
    ops = [{"op": "replace", "path": "/gender", "value": "female"},
           {"op": "test", "path": "/gender", "value": "other"}]
    resp = client.patch(f"/Patient/{rid}", json=ops,
                        headers={"Content-Type": "application/json-patch+json"})
    assert resp.status_code in (409, 412, 422), resp.text
    assert client.get(f"/Patient/{rid}").json()["gender"] == "male"


def test_patch_producing_invalid_resource_is_422(client):
    rid = client.post("/Patient", json=_patient(_uid())).json()["id"]
    ops = [{"op": "add", "path": "/gender", "value": "banana"}]
    resp = client.patch(f"/Patient/{rid}", json=ops,
                        headers={"Content-Type": "application/json-patch+json"})
    assert resp.status_code == 422
    assert "Patient.gender" in str(resp.json())


def test_fhirpath_patch(client):
    rid = client.post("/Patient", json=_patient(_uid(), gender="male")).json()["id"]
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "operation", "part": [
            {"name": "type", "valueCode": "replace"},
            {"name": "path", "valueString": "Patient.gender"},
            {"name": "value", "valueCode": "female"}]},
        {"name": "operation", "part": [
            {"name": "type", "valueCode": "add"},
            {"name": "path", "valueString": "Patient"},
            {"name": "name", "valueString": "birthDate"},
            {"name": "value", "valueDate": "1980-02-03"}]},
    ]}
    resp = client.patch(f"/Patient/{rid}", json=params,
                        headers={"Content-Type": "application/fhir+json", "If-Match": 'W/"1"'})
    assert resp.status_code == 200, resp.text
    body = client.get(f"/Patient/{rid}").json()
    assert body["gender"] == "female"
    assert body["birthDate"] == "1980-02-03"


def test_fhirpath_patch_if_match_mismatch_is_412(client):
    rid = client.post("/Patient", json=_patient(_uid())).json()["id"]
    params = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"},
        {"name": "path", "valueString": "Patient.active"},
        {"name": "value", "valueBoolean": True}]}]}
    resp = client.patch(f"/Patient/{rid}", json=params,
                        headers={"Content-Type": "application/fhir+json", "If-Match": 'W/"2"'})
    assert resp.status_code == 412


def test_patch_of_missing_or_deleted(client):
    ops = [{"op": "add", "path": "/active", "value": True}]
    headers = {"Content-Type": "application/json-patch+json"}
    assert client.patch(f"/Patient/{_uid()}", json=ops, headers=headers).status_code == 404
    rid = client.post("/Patient", json=_patient(_uid())).json()["id"]
    client.delete(f"/Patient/{rid}")
    assert client.patch(f"/Patient/{rid}", json=ops, headers=headers).status_code == 410


def test_stored_json_keeps_decimal_precision(client):
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "valueQuantity": {"value": 1.50, "unit": "mmol/L"}}
    raw = b'{"resourceType":"Observation","status":"final","code":{"text":"x"},' \
          b'"valueQuantity":{"value":1.50,"unit":"mmol/L"}}'
    resp = client.post("/Observation", content=raw,
                       headers={"Content-Type": "application/fhir+json"})
    assert resp.status_code == 201, resp.text
    assert obs["resourceType"] == "Observation"
    read = client.get(f"/Observation/{resp.json()['id']}")
    assert b'"value":1.50' in read.content
