"""The resource server's token verification (`akson.access.tokens`) accepts what the provider
issues and reads the same person, workplace, attestation and DPoP binding out of it — trusting the
provider through the JWKS file it writes beside its keys."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from akson.access.dpop import DpopPolicy, DpopRequest, MemoryReplayCache, access_token_hash
from akson.access.issuers import FileJwks, TrustedIssuer, TrustedIssuers
from akson.access.token_error import TokenError
from akson.access.tokens import verify_access_token
from akson.idp.keys import JWKS_FILE
from tests.idp.conftest import Env
from tests.idp.support import (
    assertion,
    authorize_params,
    client_credentials,
    dpop_proof,
    exchange,
    login_citizen,
    login_practitioner,
    pkce_pair,
    query_of,
)


def _issuers(env: Env) -> TrustedIssuers:
    return TrustedIssuers([TrustedIssuer(env.server.issuer, FileJwks(env.key_dir / JWKS_FILE),
                                         frozenset({f"{env.url}/fhir"}), "akson")])


def test_practitioner_token_becomes_a_practitioner_principal(env: Env, http: httpx.Client):
    gp = env.user("Fastlege")
    verifier, challenge = pkce_pair()
    done = login_practitioner(http, env, authorize_params(env, challenge), gp.id_value,
                              purpose="ETREAT")
    token = exchange(http, query_of(done.headers["location"])["code"], verifier).json()
    principal = verify_access_token(token["access_token"], issuers=_issuers(env), now=time.time())
    assert principal.kind == "practitioner" and principal.hpr_number == gp.id_value
    assert principal.orgnr_child in gp.where and principal.security_level == "4"
    assert principal.name == gp.name and principal.client_id == "test-app"
    assert principal.care_relationship is not None
    assert principal.care_relationship.purpose_of_use == "ETREAT"


def test_citizen_token_becomes_a_citizen_principal(env: Env, http: httpx.Client):
    citizen = env.user("Innbygger")
    verifier, challenge = pkce_pair()
    done = login_citizen(http, authorize_params(env, challenge), citizen.id_value)
    token = exchange(http, query_of(done.headers["location"])["code"], verifier).json()
    principal = verify_access_token(token["access_token"], issuers=_issuers(env), now=time.time())
    assert principal.kind == "citizen" and principal.national_id == citizen.id_value
    assert principal.security_level == "idporten-loa-high"


def test_dpop_bound_system_token_needs_its_proof(env: Env, http: httpx.Client):
    key = ec.generate_private_key(ec.SECP256R1())
    body = client_credentials(http, assertion(env), scope="system/Patient.rs",
                              headers={"DPoP": dpop_proof(key, f"{env.url}/auth/token")}).json()
    raw = body["access_token"]
    url = f"{env.url}/fhir/Patient"
    policy = DpopPolicy(MemoryReplayCache())
    with pytest.raises(TokenError):  # as a Bearer token it is refused
        verify_access_token(raw, issuers=_issuers(env), now=time.time())
    proof = jwt.encode({"jti": "p-1", "htm": "GET", "htu": url, "iat": int(time.time()),
                        "ath": access_token_hash(raw)}, key, algorithm="ES256",
                       headers={"typ": "dpop+jwt", "jwk": ECAlgorithm.to_jwk(
                           key.public_key(), as_dict=True)})
    principal = verify_access_token(raw, issuers=_issuers(env), now=time.time(),
                                    dpop=DpopRequest("DPoP", proof, "GET", url, policy))
    assert principal.kind == "system" and principal.client_id == "sys-jwt"
    assert principal.dpop_jkt is not None


def test_a_dpop_proof_used_at_one_server_process_is_refused_by_another(env: Env,
                                                                        http: httpx.Client):
    """RFC 9449 §11.1 across workers: the accepted proof's jti is kept in the database, so a
    second worker process of the installation (its own authenticator, same database) refuses
    the replay that an in-process cache would let through."""
    import asyncio

    from akson.api.fhir.messages import FhirRequest
    from akson.app import authenticator

    key = ec.generate_private_key(ec.SECP256R1())
    raw = client_credentials(http, assertion(env), scope="system/Patient.rs",
                             headers={"DPoP": dpop_proof(key, f"{env.url}/auth/token")}
                             ).json()["access_token"]
    url = f"{env.url}/fhir/Patient"
    proof = jwt.encode({"jti": "p-shared", "htm": "GET", "htu": url, "iat": int(time.time()),
                        "ath": access_token_hash(raw)}, key, algorithm="ES256",
                       headers={"typ": "dpop+jwt", "jwk": ECAlgorithm.to_jwk(
                           key.public_key(), as_dict=True)})
    headers = {"Authorization": f"DPoP {raw}", "DPoP": proof}
    assert http.get(url, headers=headers).status_code == 200
    other_worker = authenticator(env.server.akson.settings, env.server.akson.idp)
    request = FhirRequest("GET", ["Patient"], headers={k.lower(): v for k, v in headers.items()},
                          base_url=f"{env.url}/fhir", url=url)
    with pytest.raises(TokenError) as refused:
        asyncio.run(other_worker.authenticate(request))
    assert refused.value.reason == "dpop_replay"
