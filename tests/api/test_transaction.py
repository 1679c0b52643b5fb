"""Transaction Bundles (https://hl7.org/fhir/R4/http.html#transaction)."""

from __future__ import annotations

import uuid

SYS = "https://akson.test/sid/transaction"


def _ident() -> str:
    return uuid.uuid4().hex


def _patient(ident: str, **extra) -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": SYS, "value": ident}], **extra}


def _urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def _tx(*entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def _post(resource: dict, full_url: str | None = None, **request) -> dict:
    entry: dict = {"resource": resource,
                   "request": {"method": "POST", "url": resource["resourceType"], **request}}
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def _count(client, res_type: str, **params) -> int:
    bundle = client.get(f"/{res_type}", params={**params, "_total": "accurate"}).json()
    return int(bundle["total"])


def test_transaction_creates_and_rewrites_urn_uuid_references(client):
    ident = _ident()
    purn, eurn = _urn(), _urn()
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": ident},
           "subject": {"reference": purn}, "encounter": {"reference": eurn}}
    enc = {"resourceType": "Encounter", "status": "finished",
           "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
           "subject": {"reference": purn}}
    resp = client.post("", json=_tx(_post(obs), _post(_patient(ident), purn), _post(enc, eurn)))
    assert resp.status_code == 200, resp.text
    bundle = resp.json()
    assert bundle["type"] == "transaction-response"
    entries = bundle["entry"]
    assert len(entries) == 3
    # response entries in request order
    assert all(e["response"]["status"].startswith("201") for e in entries)
    assert "/Observation/" in entries[0]["response"]["location"]
    assert "/Patient/" in entries[1]["response"]["location"]
    assert "/Encounter/" in entries[2]["response"]["location"]
    assert all(e["response"]["etag"] == 'W/"1"' for e in entries)
    pid = entries[1]["response"]["location"].split("/Patient/")[1].split("/")[0]
    eid = entries[2]["response"]["location"].split("/Encounter/")[1].split("/")[0]
    oid = entries[0]["response"]["location"].split("/Observation/")[1].split("/")[0]
    stored = client.get(f"/Observation/{oid}").json()
    assert stored["subject"]["reference"] == f"Patient/{pid}"
    assert stored["encounter"]["reference"] == f"Encounter/{eid}"
    assert client.get(f"/Encounter/{eid}").json()["subject"]["reference"] == f"Patient/{pid}"
    found = client.get("/Observation", params={"subject": f"Patient/{pid}"}).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [oid]


def test_transaction_processing_order(client):
    """DELETE, then POST, then PUT, then GET — whatever order the entries are written in."""
    old_ident, new_ident = _ident(), _ident()
    old = client.post("/Patient", json=_patient(old_ident)).json()["id"]
    put_id = f"tx-{_ident()[:20]}"
    entries = [
        {"request": {"method": "GET", "url": f"Patient?identifier={SYS}|{new_ident}"}},
        {"resource": {**_patient(new_ident), "id": put_id},
         "request": {"method": "PUT", "url": f"Patient/{put_id}"}},
        _post(_patient(new_ident)),
        {"request": {"method": "GET", "url": f"Patient?_id={old}"}},
        {"request": {"method": "DELETE", "url": f"Patient/{old}"}},
    ]
    resp = client.post("", json=_tx(*entries))
    assert resp.status_code == 200, resp.text
    out = resp.json()["entry"]
    # GET runs last: it sees both new patients and the deletion.
    search = out[0]["resource"]
    assert search["resourceType"] == "Bundle"
    assert len(search["entry"]) == 2
    assert out[1]["response"]["status"].startswith("201")
    assert out[2]["response"]["status"].startswith("201")
    assert out[3]["response"]["status"].startswith("200")
    assert "entry" not in out[3]["resource"]  # the DELETE ran before the GET
    assert out[4]["response"]["status"].startswith(("200", "204"))


def test_transaction_conditional_reference(client):
    ident = _ident()
    pid = client.post("/Patient", json=_patient(ident)).json()["id"]
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "subject": {"reference": f"Patient?identifier={SYS}|{ident}"}}
    resp = client.post("", json=_tx(_post(obs)))
    assert resp.status_code == 200, resp.text
    loc = resp.json()["entry"][0]["response"]["location"]
    oid = loc.split("/Observation/")[1].split("/")[0]
    assert client.get(f"/Observation/{oid}").json()["subject"]["reference"] == f"Patient/{pid}"


def test_transaction_conditional_reference_without_match_fails_whole(client):
    ident = _ident()
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": ident},
           "subject": {"reference": f"Patient?identifier={SYS}|{_ident()}"}}
    resp = client.post("", json=_tx(_post(_patient(ident)), _post(obs)))
    assert 400 <= resp.status_code < 500
    assert resp.json()["resourceType"] == "OperationOutcome"
    assert _count(client, "Patient", identifier=f"{SYS}|{ident}") == 0


def test_transaction_if_none_exist(client):
    ident = _ident()
    existing = client.post("/Patient", json=_patient(ident)).json()["id"]
    purn = _urn()
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "subject": {"reference": purn}}
    resp = client.post("", json=_tx(
        _post(_patient(ident), purn, ifNoneExist=f"identifier={SYS}|{ident}"), _post(obs)))
    assert resp.status_code == 200, resp.text
    out = resp.json()["entry"]
    assert out[0]["response"]["status"].startswith("200")
    assert existing in out[0]["response"]["location"]
    oid = out[1]["response"]["location"].split("/Observation/")[1].split("/")[0]
    assert client.get(f"/Observation/{oid}").json()["subject"]["reference"] == \
        f"Patient/{existing}"
    assert _count(client, "Patient", identifier=f"{SYS}|{ident}") == 1


def test_transaction_if_none_exist_no_match_creates_once(client):
    ident = _ident()
    entry = _post(_patient(ident), _urn(), ifNoneExist=f"identifier={SYS}|{ident}")
    resp = client.post("", json=_tx(entry))
    assert resp.status_code == 200, resp.text
    assert resp.json()["entry"][0]["response"]["status"].startswith("201")
    again = client.post("", json=_tx(
        _post(_patient(ident), _urn(), ifNoneExist=f"identifier={SYS}|{ident}")))
    assert again.json()["entry"][0]["response"]["status"].startswith("200")
    assert _count(client, "Patient", identifier=f"{SYS}|{ident}") == 1


def test_failing_entry_rolls_back_everything(client):
    idents = [_ident() for _ in range(3)]
    victim_ident = _ident()
    victim = client.post("/Patient", json=_patient(victim_ident)).json()["id"]
    updated_id = client.post("/Patient", json=_patient(victim_ident)).json()["id"]
    entries = [
        _post(_patient(idents[0])),
        _post(_patient(idents[1])),
        {"resource": {**_patient(victim_ident, gender="female"), "id": updated_id},
         "request": {"method": "PUT", "url": f"Patient/{updated_id}"}},
        _post(_patient(idents[2], birthDate="not-a-date")),
        {"request": {"method": "DELETE", "url": f"Patient/{victim}"}},
    ]
    resp = client.post("", json=_tx(*entries))
    assert resp.status_code in (400, 422), resp.text
    outcome = resp.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "Bundle.entry[3]" in str(outcome)
    for ident in idents:
        assert _count(client, "Patient", identifier=f"{SYS}|{ident}") == 0
    assert client.get(f"/Patient/{victim}").status_code == 200
    after = client.get(f"/Patient/{updated_id}")
    assert after.headers["etag"] == 'W/"1"' and "gender" not in after.json()


def test_failing_put_if_match_rolls_back(client):
    ident = _ident()
    rid = client.post("/Patient", json=_patient(_ident())).json()["id"]
    entries = [
        _post(_patient(ident)),
        {"resource": {**_patient(ident), "id": rid},
         "request": {"method": "PUT", "url": f"Patient/{rid}", "ifMatch": 'W/"5"'}},
    ]
    resp = client.post("", json=_tx(*entries))
    assert resp.status_code == 412
    assert _count(client, "Patient", identifier=f"{SYS}|{ident}") == 0


def test_transaction_with_absolute_urls_and_put_create(client):
    ident = _ident()
    rid = f"tx-{_ident()[:20]}"
    base = str(client.base_url).rstrip("/")
    entry = {"fullUrl": f"{base}/Patient/{rid}", "resource": {**_patient(ident), "id": rid},
             "request": {"method": "PUT", "url": f"{base}/Patient/{rid}"}}
    resp = client.post("", json=_tx(entry))
    assert resp.status_code == 200, resp.text
    out = resp.json()["entry"][0]["response"]
    assert out["status"].startswith("201")
    assert out["location"].endswith(f"/Patient/{rid}/_history/1")
    assert client.get(f"/Patient/{rid}").status_code == 200


def test_duplicate_full_urls_refused(client):
    urn = _urn()
    ident = _ident()
    resp = client.post("", json=_tx(_post(_patient(ident), urn), _post(_patient(ident), urn)))
    assert resp.status_code == 400
    assert _count(client, "Patient", identifier=f"{SYS}|{ident}") == 0


def test_empty_transaction(client):
    resp = client.post("", json={"resourceType": "Bundle", "type": "transaction"})
    assert resp.status_code == 200
    assert resp.json()["type"] == "transaction-response"


def test_post_to_base_needs_transaction_or_batch(client):
    assert client.post("", json={"resourceType": "Bundle", "type": "collection"}).status_code \
        == 400
    assert client.post("", json={"resourceType": "Patient"}).status_code == 400


def test_transaction_entry_without_request_is_400(client):
    ident = _ident()
    resp = client.post("", json=_tx(_post(_patient(ident)), {"resource": _patient(ident)}))
    assert resp.status_code == 400
    assert _count(client, "Patient", identifier=f"{SYS}|{ident}") == 0


def test_transaction_patch_entry(client):
    import base64
    import json

    rid = client.post("/Patient", json=_patient(_ident())).json()["id"]
    ops = [{"op": "add", "path": "/active", "value": True}]
    entry = {"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json",
                          "data": base64.b64encode(json.dumps(ops).encode()).decode()},
             "request": {"method": "PATCH", "url": f"Patient/{rid}"}}
    resp = client.post("", json=_tx(entry))
    assert resp.status_code == 200, resp.text
    assert client.get(f"/Patient/{rid}").json()["active"] is True


def test_transaction_conditional_update_and_delete_entries(client):
    keep, gone = _ident(), _ident()
    kept = client.post("/Patient", json=_patient(keep)).json()["id"]
    removed = client.post("/Patient", json=_patient(gone)).json()["id"]
    new = _ident()
    resp = client.post("", json=_tx(
        {"resource": _patient(keep, active=True),
         "request": {"method": "PUT", "url": f"Patient?identifier={SYS}|{keep}"}},
        {"resource": _patient(new),
         "request": {"method": "PUT", "url": f"Patient?identifier={SYS}|{new}"}},
        {"request": {"method": "DELETE", "url": f"Patient?identifier={SYS}|{gone}"}},
    ))
    assert resp.status_code == 200, resp.text
    out = resp.json()["entry"]
    assert out[0]["response"]["status"].startswith("200")
    assert kept in out[0]["response"]["location"]
    assert out[1]["response"]["status"].startswith("201")
    assert client.get(f"/Patient/{kept}").json()["active"] is True
    assert client.get(f"/Patient/{removed}").status_code == 410
    assert _count(client, "Patient", identifier=f"{SYS}|{new}") == 1


def test_transaction_urn_uuid_of_conditional_update_entry(client):
    """A reference to the fullUrl of a conditional PUT points at the resource it resolved to."""
    existing_ident, new_ident = _ident(), _ident()
    existing = client.post("/Patient", json=_patient(existing_ident)).json()["id"]
    urn_existing, urn_new = _urn(), _urn()
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "subject": {"reference": urn_existing}, "performer": [{"reference": urn_new}]}
    resp = client.post("", json=_tx(
        {"fullUrl": urn_existing, "resource": _patient(existing_ident, active=True),
         "request": {"method": "PUT", "url": f"Patient?identifier={SYS}|{existing_ident}"}},
        {"fullUrl": urn_new, "resource": _patient(new_ident),
         "request": {"method": "PUT", "url": f"Patient?identifier={SYS}|{new_ident}"}},
        _post(obs),
    ))
    assert resp.status_code == 200, resp.text
    out = resp.json()["entry"]
    new_id = out[1]["response"]["location"].split("/Patient/")[1].split("/")[0]
    oid = out[2]["response"]["location"].split("/Observation/")[1].split("/")[0]
    stored = client.get(f"/Observation/{oid}").json()
    assert stored["subject"]["reference"] == f"Patient/{existing}"
    assert stored["performer"][0]["reference"] == f"Patient/{new_id}"


def test_transaction_response_carries_resources_when_asked(client):
    ident = _ident()
    resp = client.post("", json=_tx(_post(_patient(ident))),
                       headers={"Prefer": "return=representation"})
    assert resp.status_code == 200
    entry = resp.json()["entry"][0]
    assert entry["resource"]["resourceType"] == "Patient"
    assert entry["fullUrl"].endswith(f"/Patient/{entry['resource']['id']}")
