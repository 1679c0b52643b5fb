"""Production refuses synthetic national ids; test environments accept them (DOMAIN.md §1)."""

from __future__ import annotations

from datetime import date

import httpx
from tests.conftest import ThreadServer

from akson.config import Settings
from akson.fhir.identifiers import make_fnr
from akson.fhir.naming import FNR_SYSTEM
from akson.store.migrate import upgrade


def _patient(fnr: str) -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": FNR_SYSTEM, "value": fnr}]}


def test_production_refuses_synthetic_but_not_real_form_numbers(tmp_path):
    url = f"sqlite:///{tmp_path / 'prod.db'}"
    upgrade(url)
    tenor = make_fnr(date(1980, 11, 1), 123, synthetic="tenor")
    ordinary = next(n for i in range(100, 400) if (n := make_fnr(date(1980, 11, 1), i)))
    assert tenor and ordinary
    with ThreadServer(Settings(database_url=url, environment="production")) as srv, \
            httpx.Client(base_url=srv.url + "/fhir", auth=srv.auth()) as client:
        refused = client.post("/Patient", json=_patient(tenor))
        assert refused.status_code == 422
        issue = refused.json()["issue"][0]
        assert "synthetic" in issue["diagnostics"]
        assert issue["expression"] == ["Patient.identifier[0].value"]
        assert tenor not in refused.text  # never echo a national id
        assert client.post("/Patient", json=_patient(ordinary)).status_code == 201


def test_test_environment_accepts_synthetic(client):
    tenor = make_fnr(date(1990, 5, 17), 321, synthetic="tenor")
    assert tenor
    assert client.post("/Patient", json=_patient(tenor)).status_code == 201
