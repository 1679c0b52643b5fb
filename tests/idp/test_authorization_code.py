"""Authorization code + PKCE through the login page: practitioners, citizens, and the refusals."""

from __future__ import annotations

import time
from datetime import date

import httpx
import jwt

from akson.access.attestation import find_attestation, parse_attestation
from akson.fhir.identifiers import fnr_is_valid, make_fnr
from tests.idp.conftest import REDIRECT, Env
from tests.idp.support import (
    authorize_params,
    exchange,
    hidden_fields,
    login_citizen,
    login_practitioner,
    pkce_pair,
    query_of,
    verify,
)


def _code(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    query = query_of(response.headers["location"])
    assert response.headers["location"].startswith(REDIRECT + "?")
    assert query["state"] == "st-123"
    return query["code"]


def test_practitioner_login_gives_helseid_claims_and_an_attestation(env: Env, http: httpx.Client):
    gp = env.user("Fastlege")
    verifier, challenge = pkce_pair()
    done = login_practitioner(http, env, authorize_params(env, challenge), gp.id_value)
    query = query_of(done.headers["location"])
    assert query["iss"] == env.server.issuer  # RFC 9207
    response = exchange(http, _code(done), verifier)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300
    assert body["scope"] == "openid fhirUser offline_access user/*.cruds"
    assert body["refresh_token"]

    assert jwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"
    claims = verify(env, body["access_token"], audience=f"{env.url}/fhir")
    assert claims["exp"] - claims["iat"] == 300
    assert claims["client_id"] == "test-app" and claims["scope"] == body["scope"]
    assert claims["jti"] and claims["sub"]
    pid = claims["helseid://claims/identity/pid"]
    assert fnr_is_valid(pid) and claims["sub"] != pid, "sub is a pseudonym, not the national id"
    assert claims["helseid://claims/hpr/hpr_number"] == gp.id_value
    assert claims["helseid://claims/identity/security_level"] == "4"
    assert claims["name"] == gp.name
    parent = claims["helseid://claims/client/claims/orgnr_parent"]
    child = claims["helseid://claims/client/claims/orgnr_child"]
    assert len(parent) == 9 and len(child) == 9 and parent != child
    assert child in gp.where, "the unit the demo lists for this GP"

    [attested] = claims["authorization_details"]
    assert attested["type"] == "nhn:tillitsrammeverk:parameters"
    assert attested["practitioner"]["identifier"]["id"] == pid
    assert attested["practitioner"]["legal_entity"]["id"] == parent
    assert attested["practitioner"]["point_of_care"]["id"] == child
    assert attested["care_relationship"]["purpose_of_use"]["code"] == "TREAT"
    assert attested["care_relationship"]["decision_ref"]["user_selected"] is False
    assert abs(attested["toa"] - time.time()) < 60
    # The resource server's attestation check accepts what the provider issues.
    care = parse_attestation(find_attestation(claims["authorization_details"]),
                             authenticated_pid=pid, now=time.time())
    assert care.purpose_of_use == "TREAT"

    id_token = verify(env, body["id_token"], audience="test-app")
    assert id_token["nonce"] == "n-456" and id_token["sub"] == claims["sub"]
    assert id_token["fhirUser"].startswith("Practitioner/") and id_token["sid"]


def test_break_the_glass_needs_a_reason_and_is_self_declared(env: Env, http: httpx.Client):
    gp = env.user("Legevaktlege")
    verifier, challenge = pkce_pair()
    params = authorize_params(env, challenge)
    refused = login_practitioner(http, env, params, gp.id_value, purpose="BTG")
    assert refused.status_code == 400
    assert "Skriv en begrunnelse" in refused.text and 'role="alert"' in refused.text

    done = login_practitioner(http, env, params, gp.id_value, purpose="BTG",
                              reason="Bevisstløs pasient, akutt")
    claims = verify(env, exchange(http, _code(done), verifier).json()["access_token"])
    care = claims["authorization_details"][0]["care_relationship"]
    assert care["purpose_of_use"]["code"] == "BTG"
    assert care["decision_ref"] == {"id": care["decision_ref"]["id"], "user_selected": True,
                                    "description": "Bevisstløs pasient, akutt"}


def test_self_declared_care_relationship_needs_a_reason(env: Env, http: httpx.Client):
    nurse = env.user("Sykepleier hjemmetjenesten")
    _, challenge = pkce_pair()
    refused = login_practitioner(http, env, authorize_params(env, challenge), nurse.id_value,
                                 purpose="COC", self_declared=True)
    assert refused.status_code == 400 and "Skriv en begrunnelse" in refused.text


def test_practitioner_launch_patient_names_the_patient(env: Env, http: httpx.Client):
    gp = env.user("Fastlege")
    citizen = env.user("Innbygger")
    verifier, challenge = pkce_pair()
    params = authorize_params(env, challenge, scope="openid launch/patient patient/*.rs")
    # A self-declared care relationship names the patient in the attestation, so the access
    # gate lets this practitioner read them whether or not they are on the GP's list.
    done = login_practitioner(http, env, params, gp.id_value, patient_nin=citizen.id_value,
                              self_declared=True, reason="Oppfølging etter telefon")
    body = exchange(http, _code(done), verifier).json()
    patient = http.get(f"/fhir/Patient/{body['patient']}",
                       headers={"Authorization": f"Bearer {body['access_token']}"}).json()
    assert any(i["value"] == citizen.id_value for i in patient["identifier"])
    claims = verify(env, body["access_token"])
    assert claims["patient"] == body["patient"]
    assert claims["authorization_details"][0]["patients"][0]["identifier"]["id"] == citizen.id_value


def test_citizen_login_gives_id_porten_claims(env: Env, http: httpx.Client):
    citizen = env.user("Innbygger")
    verifier, challenge = pkce_pair()
    params = authorize_params(env, challenge, scope="openid fhirUser launch/patient patient/*.rs")
    body = exchange(http, _code(login_citizen(http, params, citizen.id_value)), verifier).json()
    claims = verify(env, body["access_token"])
    assert claims["pid"] == citizen.id_value and claims["acr"] == "idporten-loa-high"
    assert "helseid://claims/identity/pid" not in claims and "authorization_details" not in claims
    assert claims["patient"] == body["patient"]
    assert verify(env, body["id_token"])["fhirUser"] == f"Patient/{body['patient']}"


def test_unknown_citizen_is_refused_without_echoing_the_number(env: Env, http: httpx.Client):
    # A valid synthetic number (month + 80) that no Patient in the demo has.
    known = {u.id_value for u in env.users}
    nin = next(n for i in range(1, 400) if (n := make_fnr(date(1931, 2, 3), i,
                                                            synthetic="tenor")) and n not in known)
    _, challenge = pkce_pair()
    refused = login_citizen(http, authorize_params(env, challenge), nin)
    assert refused.status_code == 400
    assert "Fant ingen innbygger" in refused.text
    assert nin not in refused.text


def test_unknown_hpr_number_is_refused(env: Env, http: httpx.Client):
    _, challenge = pkce_pair()
    page = http.get("/auth/authorize", params=authorize_params(env, challenge))
    refused = http.post("/auth/authorize", data={**hidden_fields(page.text), "step": "hpr",
                                                 "hpr": "999999999"})
    assert refused.status_code == 400 and "Fant ikke helsepersonell" in refused.text


def test_wrong_code_verifier_is_refused(env: Env, http: httpx.Client):
    citizen = env.user("Innbygger")
    _, challenge = pkce_pair()
    code = _code(login_citizen(http, authorize_params(env, challenge), citizen.id_value))
    other_verifier, _ = pkce_pair()
    refused = exchange(http, code, other_verifier)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def test_a_code_works_once(env: Env, http: httpx.Client):
    citizen = env.user("Innbygger")
    verifier, challenge = pkce_pair()
    code = _code(login_citizen(http, authorize_params(env, challenge), citizen.id_value))
    assert exchange(http, code, verifier).status_code == 200
    again = exchange(http, code, verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_an_old_code_is_refused(env: Env, http: httpx.Client):
    citizen = env.user("Innbygger")
    verifier, challenge = pkce_pair()
    code = _code(login_citizen(http, authorize_params(env, challenge), citizen.id_value))
    env.server.clock.offset = 61  # codes live 60 seconds
    refused = exchange(http, code, verifier)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def test_redirect_uri_must_match_at_the_token_endpoint(env: Env, http: httpx.Client):
    citizen = env.user("Innbygger")
    verifier, challenge = pkce_pair()
    code = _code(login_citizen(http, authorize_params(env, challenge), citizen.id_value))
    refused = exchange(http, code, verifier, redirect_uri="http://app.test/other")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def test_unregistered_redirect_uri_is_never_redirected_to(env: Env, http: httpx.Client):
    _, challenge = pkce_pair()
    page = http.get("/auth/authorize", params=authorize_params(
        env, challenge, redirect_uri="http://evil.test/cb"))
    assert page.status_code == 400 and "location" not in page.headers
    assert "ikke registrert" in page.text


def test_missing_pkce_goes_back_to_the_client_as_an_error(env: Env, http: httpx.Client):
    params = authorize_params(env, "x")
    del params["code_challenge"], params["code_challenge_method"]
    response = http.get("/auth/authorize", params=params)
    assert response.status_code == 303
    query = query_of(response.headers["location"])
    assert query["error"] == "invalid_request" and query["state"] == "st-123"


def test_plain_pkce_is_refused(env: Env, http: httpx.Client):
    verifier, _ = pkce_pair()
    response = http.get("/auth/authorize", params=authorize_params(
        env, verifier, code_challenge_method="plain"))
    assert query_of(response.headers["location"])["error"] == "invalid_request"


def test_scope_outside_the_clients_registration_is_refused(env: Env, http: httpx.Client):
    _, challenge = pkce_pair()
    response = http.get("/auth/authorize", params=authorize_params(
        env, challenge, scope="openid system/*.*"))
    assert query_of(response.headers["location"])["error"] == "invalid_scope"


def test_foreign_audience_is_refused(env: Env, http: httpx.Client):
    _, challenge = pkce_pair()
    response = http.get("/auth/authorize", params=authorize_params(
        env, challenge, aud="https://other.example/fhir"))
    assert query_of(response.headers["location"])["error"] == "invalid_request"


def test_form_without_the_csrf_token_is_refused(env: Env, http: httpx.Client):
    citizen = env.user("Innbygger")
    _, challenge = pkce_pair()
    page = http.get("/auth/authorize", params=authorize_params(env, challenge))
    fields = hidden_fields(page.text)
    forged = http.post("/auth/authorize", data={"request_id": fields["request_id"],
                                                "csrf": "0" * 64, "step": "citizen",
                                                "nin": citizen.id_value})
    assert forged.status_code == 403
    with httpx.Client(base_url=env.url) as other_browser:  # right token, but not its cookie
        cross_site = other_browser.post("/auth/authorize", data={**fields, "step": "citizen",
                                                                 "nin": citizen.id_value})
    assert cross_site.status_code == 403


def test_cancel_returns_access_denied(env: Env, http: httpx.Client):
    _, challenge = pkce_pair()
    page = http.get("/auth/authorize", params=authorize_params(env, challenge))
    response = http.post("/auth/authorize", data={**hidden_fields(page.text), "step": "cancel"})
    query = query_of(response.headers["location"])
    assert query["error"] == "access_denied" and query["state"] == "st-123"
