"""Discovery: the OpenID configuration, the JWKS and SMART's smart-configuration, without a token."""

from __future__ import annotations

import httpx

from tests.idp.conftest import Env


def test_openid_configuration_names_this_issuer_and_its_endpoints(env: Env, http: httpx.Client):
    meta = http.get("/auth/.well-known/openid-configuration")
    assert meta.status_code == 200
    doc = meta.json()
    issuer = env.server.issuer
    assert doc["issuer"] == issuer
    assert doc["authorization_endpoint"] == f"{issuer}/authorize"
    assert doc["token_endpoint"] == f"{issuer}/token"
    assert doc["jwks_uri"] == f"{issuer}/jwks"
    assert doc["end_session_endpoint"] == f"{issuer}/logout"
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert set(doc["grant_types_supported"]) == {"authorization_code", "refresh_token",
                                                 "client_credentials"}
    assert "private_key_jwt" in doc["token_endpoint_auth_methods_supported"]
    assert "nhn:tillitsrammeverk:parameters" in doc["authorization_details_types_supported"]


def test_jwks_publishes_public_signing_keys_with_kid(http: httpx.Client):
    jwks = http.get("/auth/jwks").json()
    assert jwks["keys"], "at least the current key"
    for key in jwks["keys"]:
        assert key["kty"] == "RSA" and key["kid"] and key["alg"] == "RS256"
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key), "no private key material"


def test_smart_configuration_answers_without_a_token(env: Env, http: httpx.Client):
    response = http.get("/fhir/.well-known/smart-configuration")
    assert response.status_code == 200
    doc = response.json()
    assert doc["authorization_endpoint"] == f"{env.server.issuer}/authorize"
    assert doc["token_endpoint"] == f"{env.server.issuer}/token"
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert {"launch-standalone", "client-public", "client-confidential-asymmetric",
            "context-standalone-patient", "permission-v1", "permission-v2",
            "sso-openid-connect"} <= set(doc["capabilities"])
    scopes = set(doc["scopes_supported"])
    assert {"patient/*.read", "user/*.*", "system/*.read"} <= scopes, "SMART v1 scopes"
    assert {"patient/*.rs", "user/*.cruds", "system/*.rs"} <= scopes, "SMART v2 scopes"
    assert {"openid", "fhirUser", "launch/patient", "offline_access"} <= scopes
    assert {"authorization_code", "client_credentials"} <= set(doc["grant_types_supported"])
    assert {"private_key_jwt", "client_secret_basic", "none"} <= set(
        doc["token_endpoint_auth_methods_supported"])
    assert response.headers["access-control-allow-origin"] == "*"
