"""Helpers for the identity-provider tests: PKCE, walking the login page, assertions, DPoP."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from tests.idp.conftest import REDIRECT, Env


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.decode().rstrip("=")


def authorize_params(env: Env, challenge: str, **extra: str) -> dict[str, str]:
    params = {"response_type": "code", "client_id": "test-app", "redirect_uri": REDIRECT,
              "scope": "openid fhirUser offline_access user/*.cruds", "state": "st-123",
              "nonce": "n-456", "code_challenge": challenge, "code_challenge_method": "S256",
              "aud": f"{env.url}/fhir"}
    params.update(extra)
    return params


_HIDDEN = re.compile(r'name="(request_id|csrf)" value="([^"]+)"')


def hidden_fields(html: str) -> dict[str, str]:
    return dict(_HIDDEN.findall(html))


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def login_practitioner(http: httpx.Client, env: Env, params: dict[str, str], hpr: str, *,
                       purpose: str = "TREAT", reason: str = "", self_declared: bool = False,
                       patient_nin: str | None = None) -> httpx.Response:
    """Walk the login page as a practitioner; returns the final response (a 303 on success)."""
    page = http.get("/auth/authorize", params=params)
    assert page.status_code == 200, page.text
    fields = hidden_fields(page.text)
    step2 = http.post("/auth/authorize", data={**fields, "step": "hpr", "hpr": hpr})
    assert step2.status_code == 200, step2.text
    workplace = re.search(r'name="workplace" value="([^"]+)"', step2.text)
    assert workplace
    form = {**hidden_fields(step2.text), "step": "practitioner", "hpr": hpr,
            "workplace": workplace.group(1), "purpose": purpose, "reason": reason}
    if self_declared:
        form["self_declared"] = "true"
    if patient_nin is not None:
        form["patient_nin"] = patient_nin
    return http.post("/auth/authorize", data=form)


def login_citizen(http: httpx.Client, params: dict[str, str], nin: str) -> httpx.Response:
    page = http.get("/auth/authorize", params=params)
    assert page.status_code == 200, page.text
    return http.post("/auth/authorize", data={**hidden_fields(page.text), "step": "citizen",
                                              "nin": nin})


def exchange(http: httpx.Client, code: str, verifier: str, **extra: str) -> httpx.Response:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "code_verifier": verifier, "client_id": "test-app", **extra}
    return http.post("/auth/token", data=form)


def verify(env: Env, token: str, *, audience: str | None = None) -> dict[str, Any]:
    """The claims of a token signed by the provider, verified against its published JWKS."""
    jwks = httpx.get(f"{env.url}/auth/jwks").json()
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == kid))
    options = {} if audience else {"verify_aud": False}
    return dict(jwt.decode(token, key, algorithms=["RS256"], audience=audience,
                           issuer=env.server.issuer, options=options))


def assertion(env: Env, client_id: str = "sys-jwt", *, key: ec.EllipticCurvePrivateKey | None = None,
              aud: str | None = None, jti: str | None = None, exp_in: int = 60,
              kid: str | None = None) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": aud or f"{env.url}/auth/token",
              "iat": now, "exp": now + exp_in, "jti": jti or str(uuid.uuid4())}
    return jwt.encode(claims, key or env.system_key.private, algorithm="ES256",
                      headers={"kid": kid or env.system_key.jwk["kid"]})


def client_credentials(http: httpx.Client, client_assertion: str, *,
                       headers: dict[str, str] | None = None, **extra: str) -> httpx.Response:
    return http.post("/auth/token", headers=headers, data={
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": client_assertion, **extra})


def dpop_proof(key: ec.EllipticCurvePrivateKey, url: str, method: str = "POST", *,
               iat: int | None = None, jti: str | None = None) -> str:
    jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    claims = {"jti": jti or str(uuid.uuid4()), "htm": method, "htu": url,
              "iat": int(time.time()) if iat is None else iat}
    return jwt.encode(claims, key, algorithm="ES256", headers={"typ": "dpop+jwt", "jwk": jwk})

