"""Batch Bundles: entries succeed or fail on their own (https://hl7.org/fhir/R4/http.html#transaction)."""

from __future__ import annotations

import uuid

SYS = "https://akson.test/sid/batch"


def _ident() -> str:
    return uuid.uuid4().hex


def _patient(ident: str, **extra) -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": SYS, "value": ident}], **extra}


def _batch(*entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": "batch", "entry": list(entries)}


def _post(resource: dict) -> dict:
    return {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}


def test_batch_entries_fail_independently(client):
    good1, bad, good2 = _ident(), _ident(), _ident()
    resp = client.post("", json=_batch(
        _post(_patient(good1)),
        _post(_patient(bad, gender="banana")),
        {"request": {"method": "GET", "url": f"Patient/{_ident()}"}},
        _post(_patient(good2)),
    ))
    assert resp.status_code == 200, resp.text
    bundle = resp.json()
    assert bundle["type"] == "batch-response"
    out = bundle["entry"]
    assert len(out) == 4
    assert out[0]["response"]["status"].startswith("201")
    assert out[1]["response"]["status"].startswith("422")
    assert out[1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert "Patient.gender" in str(out[1]["response"]["outcome"])
    assert out[2]["response"]["status"].startswith("404")
    assert out[3]["response"]["status"].startswith("201")
    for ident, expected in ((good1, 1), (bad, 0), (good2, 1)):
        found = client.get("/Patient", params={"identifier": f"{SYS}|{ident}"}).json()
        assert len(found.get("entry", [])) == expected


def test_batch_get_entries_return_resources(client):
    ident = _ident()
    rid = client.post("/Patient", json=_patient(ident, gender="male")).json()["id"]
    resp = client.post("", json=_batch(
        {"request": {"method": "GET", "url": f"Patient/{rid}"}},
        {"request": {"method": "GET", "url": f"Patient?identifier={SYS}|{ident}"}},
        {"request": {"method": "GET", "url": f"Patient/{rid}/_history/1"}},
    ))
    assert resp.status_code == 200, resp.text
    out = resp.json()["entry"]
    assert out[0]["response"]["status"].startswith("200")
    assert out[0]["resource"]["id"] == rid and out[0]["resource"]["gender"] == "male"
    assert out[0]["response"]["etag"] == 'W/"1"'
    assert out[1]["resource"]["resourceType"] == "Bundle"
    assert [e["resource"]["id"] for e in out[1]["resource"]["entry"]] == [rid]
    assert out[2]["resource"]["id"] == rid


def test_batch_malformed_entry_is_its_own_error(client):
    ident = _ident()
    resp = client.post("", json=_batch(
        {"resource": _patient(_ident())},  # no request
        _post(_patient(ident)),
        {"request": {"method": "GET", "url": "NoSuchType/1"}},
    ))
    assert resp.status_code == 200, resp.text
    out = resp.json()["entry"]
    assert out[0]["response"]["status"].startswith("400")
    assert out[1]["response"]["status"].startswith("201")
    assert out[2]["response"]["status"].startswith("404")


def test_batch_does_not_resolve_across_entries_atomically(client):
    """A batch with a later failure keeps the earlier entries (unlike a transaction)."""
    ident = _ident()
    rid = client.post("/Patient", json=_patient(_ident())).json()["id"]
    resp = client.post("", json=_batch(
        _post(_patient(ident)),
        {"resource": {**_patient(ident), "id": rid},
         "request": {"method": "PUT", "url": f"Patient/{rid}", "ifMatch": 'W/"9"'}},
    ))
    out = resp.json()["entry"]
    assert out[0]["response"]["status"].startswith("201")
    assert out[1]["response"]["status"].startswith("412")
    found = client.get("/Patient", params={"identifier": f"{SYS}|{ident}"}).json()
    assert len(found["entry"]) == 1


def test_nested_bundle_in_batch_is_refused(client):
    inner = {"resourceType": "Bundle", "type": "batch", "entry": []}
    resp = client.post("", json=_batch({"resource": inner, "request": {"method": "POST",
                                                                        "url": ""}}))
    assert resp.status_code in (200, 400)
    if resp.status_code == 200:
        assert resp.json()["entry"][0]["response"]["status"].startswith("4")


def test_batch_delete_and_update(client):
    a = client.post("/Patient", json=_patient(_ident())).json()["id"]
    b = client.post("/Patient", json=_patient(_ident())).json()["id"]
    resp = client.post("", json=_batch(
        {"request": {"method": "DELETE", "url": f"Patient/{a}"}},
        {"resource": {**_patient(_ident(), active=True), "id": b},
         "request": {"method": "PUT", "url": f"Patient/{b}"}},
    ))
    out = resp.json()["entry"]
    assert out[0]["response"]["status"].startswith(("200", "204"))
    assert out[1]["response"]["status"].startswith("200")
    assert out[1]["response"]["etag"] == 'W/"2"'
    assert client.get(f"/Patient/{a}").status_code == 410
    assert client.get(f"/Patient/{b}").json()["active"] is True
