"""Production refuses synthetic national ids (DOMAIN.md §1) and trusts only the issuers it is
configured with: the built-in provider, which lets anyone pick whom to log in as, is off."""

from __future__ import annotations

import json
import time
import uuid
from datetime import date
from pathlib import Path

import httpx
from tests.access.tokenkit import jwks, mint, rsa_key
from tests.conftest import ThreadServer, mint_token

from akson.config import Settings
from akson.fhir.identifiers import make_fnr
from akson.fhir.naming import FNR_SYSTEM
from akson.store.migrate import upgrade


def _patient(fnr: str) -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": FNR_SYSTEM, "value": fnr}]}


ISSUER = "https://sts.akson.test"  # stands in for HelseID: an external, configured issuer


def _production(tmp_path: Path) -> Settings:
    url = f"sqlite:///{tmp_path / 'prod.db'}"
    upgrade(url)
    (tmp_path / "jwks.json").write_text(json.dumps(jwks((rsa_key("prod"), "p1"))))
    (tmp_path / "issuers.json").write_text(json.dumps({"issuers": [
        {"issuer": ISSUER, "kind": "helseid", "jwks_file": "jwks.json",
         "audiences": ["akson-prod"]}]}))
    return Settings(database_url=url, environment="production",
                    trusted_issuers_file=str(tmp_path / "issuers.json"))


def _system_token() -> str:
    now = int(time.time())
    return mint({"iss": ISSUER, "aud": "akson-prod", "sub": "epj", "client_id": "epj",
                 "scope": "system/*.cruds", "iat": now, "nbf": now, "exp": now + 300,
                 "jti": uuid.uuid4().hex}, rsa_key("prod"), kid="p1")


def test_production_trusts_only_configured_issuers(tmp_path):
    with ThreadServer(_production(tmp_path)) as srv:
        assert httpx.get(srv.url + "/auth/.well-known/openid-configuration").status_code == 404
        assert httpx.get(srv.url + "/auth/authorize").status_code == 404
        builtin = mint_token(srv, client_id="akson-cli", scope="system/*.cruds")  # its own key
        assert httpx.get(srv.url + "/fhir/Patient",
                         headers={"Authorization": f"Bearer {builtin}"}).status_code == 401
        ok = httpx.get(srv.url + "/fhir/Patient",
                       headers={"Authorization": f"Bearer {_system_token()}"})
        assert ok.status_code == 200


def test_production_refuses_synthetic_but_not_real_form_numbers(tmp_path):
    tenor = make_fnr(date(1980, 11, 1), 123, synthetic="tenor")
    ordinary = next(n for i in range(100, 400) if (n := make_fnr(date(1980, 11, 1), i)))
    assert tenor and ordinary
    bearer = {"Authorization": f"Bearer {_system_token()}"}
    with ThreadServer(_production(tmp_path)) as srv, \
            httpx.Client(base_url=srv.url + "/fhir", headers=bearer) as client:
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


def test_serve_outside_production_stays_on_loopback(monkeypatch):
    """The demo login lets anyone in as anyone: never on a network address."""
    from click.testing import CliRunner

    from akson.cli import main

    monkeypatch.delenv("AKSON_ENVIRONMENT", raising=False)
    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--no-migrate"])
    assert result.exit_code == 2 and "AKSON_ENVIRONMENT=production" in result.output
