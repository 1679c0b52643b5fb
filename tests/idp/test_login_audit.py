"""Logins at the built-in provider are audit events: a citizen finds their own login in their
access log, read through the FHIR API with the token that login produced."""

from __future__ import annotations

import httpx

from tests.idp.conftest import Env
from tests.idp.support import (
    authorize_params,
    exchange,
    login_citizen,
    login_practitioner,
    pkce_pair,
    query_of,
)


def _token(http: httpx.Client, done: httpx.Response, verifier: str) -> dict:
    assert done.status_code == 303, done.text
    return dict(exchange(http, query_of(done.headers["location"])["code"], verifier).json())


def test_a_citizen_login_is_in_the_citizens_access_log(env: Env, http: httpx.Client):
    citizen = env.user("Innbygger")
    verifier, challenge = pkce_pair()
    params = authorize_params(env, challenge, scope="openid fhirUser launch/patient patient/*.rs")
    body = _token(http, login_citizen(http, params, citizen.id_value), verifier)
    patient = body["patient"]
    log = http.get("/fhir/AuditEvent", params={"patient": patient},
                   headers={"Authorization": f"Bearer {body['access_token']}"})
    assert log.status_code == 200, log.text
    logins = [e["resource"] for e in log.json()["entry"]
              if e["resource"]["subtype"][0]["code"] == "110122"]  # DICOM "Login"
    assert logins and logins[0]["action"] == "E"
    # Reading the own log needs the own token: without one it is 401, another's record 403.
    assert http.get("/fhir/AuditEvent", params={"patient": patient}).status_code == 401


def test_a_practitioner_cannot_read_a_citizens_access_log(env: Env, http: httpx.Client):
    gp = env.user("Fastlege")
    verifier, challenge = pkce_pair()
    body = _token(http, login_practitioner(http, env, authorize_params(env, challenge),
                                           gp.id_value), verifier)
    resp = http.get("/fhir/AuditEvent", params={"patient": "anyone"},
                    headers={"Authorization": f"Bearer {body['access_token']}"})
    assert resp.status_code == 403
