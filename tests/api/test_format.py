"""Formats and the CapabilityStatement (https://hl7.org/fhir/R4/http.html#mime-type)."""

from __future__ import annotations

import uuid

import pytest

SYS = "https://akson.test/sid/format"


def _patient() -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": SYS, "value": uuid.uuid4().hex}]}


@pytest.fixture
def rid(client) -> str:
    return str(client.post("/Patient", json=_patient()).json()["id"])


@pytest.mark.parametrize("fmt", ["json", "application/json", "application/fhir+json"])
def test_format_json_ok(client, rid, fmt):
    resp = client.get(f"/Patient/{rid}", params={"_format": fmt})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/fhir+json")
    assert resp.json()["id"] == rid


@pytest.mark.parametrize("fmt", ["xml", "application/fhir+xml", "text/xml", "ttl", "html"])
def test_format_other_is_406(client, rid, fmt):
    resp = client.get(f"/Patient/{rid}", params={"_format": fmt})
    assert resp.status_code == 406
    assert resp.json()["resourceType"] == "OperationOutcome"


def test_format_json_wins_over_xml_accept(client, rid):
    resp = client.get(f"/Patient/{rid}", params={"_format": "json"},
                      headers={"Accept": "application/fhir+xml"})
    assert resp.status_code == 200


@pytest.mark.parametrize("accept", ["application/fhir+xml", "application/xml", "text/html",
                                    "application/fhir+json;q=0, application/fhir+xml"])
def test_accept_xml_is_406(client, rid, accept):
    resp = client.get(f"/Patient/{rid}", headers={"Accept": accept})
    assert resp.status_code == 406
    assert resp.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("accept", ["application/fhir+json", "application/json", "*/*",
                                    "application/fhir+json; fhirVersion=4.0",
                                    "application/fhir+xml;q=0.9, application/fhir+json",
                                    "application/json+fhir", "text/html, */*;q=0.1"])
def test_accept_json_forms_ok(client, rid, accept):
    assert client.get(f"/Patient/{rid}", headers={"Accept": accept}).status_code == 200


@pytest.mark.parametrize("content_type", ["application/xml", "application/fhir+xml",
                                          "text/plain", "multipart/form-data"])
def test_unsupported_content_type_is_415(client, content_type):
    resp = client.post("/Patient", content=b'{"resourceType":"Patient"}',
                       headers={"Content-Type": content_type})
    assert resp.status_code == 415
    assert resp.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("content_type", ["application/fhir+json", "application/json",
                                          "application/fhir+json; charset=utf-8",
                                          "application/json+fhir", "Application/FHIR+JSON"])
def test_json_content_types_accepted(client, content_type):
    import json

    resp = client.post("/Patient", content=json.dumps(_patient()).encode(),
                       headers={"Content-Type": content_type})
    assert resp.status_code == 201, resp.text


def test_metadata_is_capability_statement(client):
    resp = client.get("/metadata")
    assert resp.status_code == 200
    cs = resp.json()
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    assert cs["kind"] == "instance"
    assert "json" in cs["format"] or "application/fhir+json" in cs["format"]
    rest = cs["rest"][0]
    assert rest["mode"] == "server"
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    params = {p["name"]: p["type"] for p in patient["searchParam"]}
    assert params["family"] == "string"
    assert params["identifier"] == "token"
    assert params["birthdate"] == "date"
    interactions = {i["code"] for i in patient["interaction"]}
    assert {"read", "vread", "create", "update", "delete", "search-type",
            "history-instance"} <= interactions
    assert {i["code"] for i in rest["interaction"]} >= {"transaction", "batch"}


def test_metadata_format_and_accept(client):
    assert client.get("/metadata", params={"_format": "xml"}).status_code == 406
    assert client.get("/metadata", headers={"Accept": "application/fhir+xml"}).status_code == 406
    assert client.get("/metadata", params={"_format": "json"}).status_code == 200


def test_errors_are_fhir_json(client):
    resp = client.get("/Patient/does-not-exist")
    assert resp.status_code == 404
    assert resp.headers["content-type"].startswith("application/fhir+json")
