"""DPoP at the token endpoint (RFC 9449 §5): the proof binds the access token to its key."""

from __future__ import annotations

import time

import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from akson.idp.jwk import thumbprint
from tests.idp.conftest import Env
from tests.idp.support import (
    assertion,
    authorize_params,
    client_credentials,
    dpop_proof,
    login_citizen,
    pkce_pair,
    query_of,
    verify,
)


def _jkt(key: ec.EllipticCurvePrivateKey) -> str:
    return thumbprint(ECAlgorithm.to_jwk(key.public_key(), as_dict=True))


def _token_url(env: Env) -> str:
    return f"{env.url}/auth/token"


def test_dpop_proof_binds_the_access_token(env: Env, http: httpx.Client):
    key = ec.generate_private_key(ec.SECP256R1())
    response = client_credentials(http, assertion(env),
                                  headers={"DPoP": dpop_proof(key, _token_url(env))})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "DPoP"
    assert verify(env, body["access_token"])["cnf"] == {"jkt": _jkt(key)}


def test_without_a_proof_the_token_is_a_bearer_token(env: Env, http: httpx.Client):
    body = client_credentials(http, assertion(env)).json()
    assert body["token_type"] == "Bearer" and "cnf" not in verify(env, body["access_token"])


def test_bad_proofs_are_refused(env: Env, http: httpx.Client):
    key = ec.generate_private_key(ec.SECP256R1())
    cases = {
        "wrong htu": dpop_proof(key, f"{env.url}/fhir/Patient"),
        "wrong htm": dpop_proof(key, _token_url(env), method="GET"),
        "old iat": dpop_proof(key, _token_url(env), iat=int(time.time()) - 3600),
        "not a JWT": "garbage",
    }
    for case, proof in cases.items():
        refused = client_credentials(http, assertion(env), headers={"DPoP": proof})
        assert refused.status_code == 400, case
        assert refused.json()["error"] == "invalid_dpop_proof", case


def test_replayed_proof_is_refused(env: Env, http: httpx.Client):
    key = ec.generate_private_key(ec.SECP256R1())
    proof = dpop_proof(key, _token_url(env))
    assert client_credentials(http, assertion(env), headers={"DPoP": proof}).status_code == 200
    replay = client_credentials(http, assertion(env), headers={"DPoP": proof})
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_dpop_proof"


def test_public_clients_refresh_token_is_bound_to_the_dpop_key(env: Env, http: httpx.Client):
    key = ec.generate_private_key(ec.SECP256R1())
    verifier, challenge = pkce_pair()
    done = login_citizen(http, authorize_params(env, challenge), env.user("Innbygger").id_value)
    code = query_of(done.headers["location"])["code"]
    first = http.post("/auth/token", headers={"DPoP": dpop_proof(key, _token_url(env))}, data={
        "grant_type": "authorization_code", "code": code, "code_verifier": verifier,
        "redirect_uri": "http://app.test/cb", "client_id": "test-app"})
    assert first.status_code == 200 and first.json()["token_type"] == "DPoP"
    form = {"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"],
            "client_id": "test-app"}
    stolen = http.post("/auth/token", data=form)  # no proof: the token alone is not enough
    assert stolen.status_code == 400
    other_key = ec.generate_private_key(ec.SECP256R1())
    wrong = http.post("/auth/token", data=form,
                      headers={"DPoP": dpop_proof(other_key, _token_url(env))})
    assert wrong.status_code == 400
    ok = http.post("/auth/token", data=form, headers={"DPoP": dpop_proof(key, _token_url(env))})
    assert ok.status_code == 200, ok.text
    assert verify(env, ok.json()["access_token"])["cnf"] == {"jkt": _jkt(key)}
