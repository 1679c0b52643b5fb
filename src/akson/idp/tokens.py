"""Minting signed tokens: JWT access tokens (RFC 9068) and OpenID Connect ID tokens.

Access token (`typ: at+jwt`, RS256, `kid` of the current signing key): `iss`, `sub`, `aud`, `exp`
(issue time + `AKSON_IDP_ACCESS_TOKEN_SECONDS`, default 300), `iat`, `nbf`, `jti`, `client_id`,
`scope`, plus per kind of caller:

- practitioner (HelseID claim names, DOMAIN.md §3): `helseid://claims/identity/pid`,
  `helseid://claims/hpr/hpr_number`, `helseid://claims/client/claims/orgnr_parent`,
  `helseid://claims/client/claims/orgnr_child`, `helseid://claims/identity/security_level` "4",
  `helseid://claims/identity/assurance_level` "high", `name`, and the attestation in
  `authorization_details` (a list, RFC 9396 §9.1);
- citizen (ID-porten claim names): `pid`, `acr` "idporten-loa-high", `name`;
- system client: no person claims (`sub` is the client id).

`patient` carries the SMART launch context (a Patient id) and `cnf.jkt` the DPoP key thumbprint
of a DPoP-bound token (RFC 9449 §6). `sub` of a person is a stable pseudonym (HMAC of the
national id under the key file's salt), never the national id itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from akson.idp.identity import Identity
from akson.idp.keys import ALGORITHM, KeyRing

PID = "helseid://claims/identity/pid"
HPR_NUMBER = "helseid://claims/hpr/hpr_number"
ORGNR_PARENT = "helseid://claims/client/claims/orgnr_parent"
ORGNR_CHILD = "helseid://claims/client/claims/orgnr_child"
SECURITY_LEVEL = "helseid://claims/identity/security_level"
ASSURANCE_LEVEL = "helseid://claims/identity/assurance_level"
CITIZEN_ACR = "idporten-loa-high"


@dataclass(frozen=True)
class Grant:
    """What a token is issued for: a client, scopes, an audience and (for users) an identity."""

    client_id: str
    scopes: tuple[str, ...]
    audience: str
    identity: Identity | None = None
    session_id: str | None = None
    auth_time: int | None = None

    @property
    def scope(self) -> str:
        return " ".join(self.scopes)


class TokenMinter:
    """Signs access and ID tokens with the key ring's current key."""

    def __init__(self, keys: KeyRing, access_token_seconds: int) -> None:
        self.keys = keys
        self.access_token_seconds = access_token_seconds

    def subject(self, grant: Grant) -> str:
        if grant.identity is None:
            return grant.client_id
        mac = hmac.new(self.keys.subject_salt,
                       f"{grant.identity.kind}:{grant.identity.pid}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()[:24]).decode().rstrip("=")

    def _sign(self, claims: dict[str, Any], typ: str) -> str:
        key = self.keys.current
        return jwt.encode(claims, key.private_key, algorithm=ALGORITHM,
                          headers={"kid": key.kid, "typ": typ})

    def access_token(self, grant: Grant, *, issuer: str, now: int,
                     jkt: str | None = None) -> str:
        """A signed RFC 9068 access token for `grant` (DPoP-bound when `jkt` is given)."""
        claims: dict[str, Any] = {
            "iss": issuer, "sub": self.subject(grant), "aud": grant.audience,
            "exp": now + self.access_token_seconds, "iat": now, "nbf": now,
            "jti": str(uuid.uuid4()), "client_id": grant.client_id, "scope": grant.scope,
        }
        if grant.auth_time is not None:
            claims["auth_time"] = grant.auth_time
        if grant.session_id is not None:
            claims["sid"] = grant.session_id
        claims.update(person_claims(grant.identity))
        if grant.identity is not None and grant.identity.launch_patient:
            claims["patient"] = grant.identity.launch_patient
        if jkt is not None:
            claims["cnf"] = {"jkt": jkt}
        return self._sign(claims, "at+jwt")

    def id_token(self, grant: Grant, *, issuer: str, now: int, nonce: str | None,
                 access_token: str) -> str:
        """An OpenID Connect ID token (Core §2) for a user grant, with `at_hash` (§3.1.3.6)."""
        assert grant.identity is not None
        digest = hashlib.sha256(access_token.encode()).digest()
        claims: dict[str, Any] = {
            "iss": issuer, "sub": self.subject(grant), "aud": grant.client_id,
            "exp": now + self.access_token_seconds, "iat": now,
            "auth_time": grant.auth_time or now, "sid": grant.session_id,
            "at_hash": base64.urlsafe_b64encode(digest[:16]).decode().rstrip("="),
            "name": grant.identity.name,
        }
        if nonce:
            claims["nonce"] = nonce
        if "fhirUser" in grant.scopes:
            claims["fhirUser"] = grant.identity.fhir_user
        claims.update(person_claims(grant.identity))
        claims.pop("authorization_details", None)  # the attestation is for the API, not the app
        return self._sign(claims, "JWT")


def person_claims(identity: Identity | None) -> dict[str, Any]:
    """HelseID claims for a practitioner, ID-porten claims for a citizen, none for a system."""
    if identity is None:
        return {}
    if identity.kind == "citizen":
        return {"pid": identity.pid, "acr": CITIZEN_ACR, "name": identity.name}
    claims: dict[str, Any] = {
        PID: identity.pid, HPR_NUMBER: identity.hpr_number, SECURITY_LEVEL: "4",
        ASSURANCE_LEVEL: "high", "name": identity.name,
    }
    if identity.workplace is not None:
        claims[ORGNR_PARENT] = identity.workplace.parent_orgnr
        claims[ORGNR_CHILD] = identity.workplace.unit_orgnr
    if identity.attestation is not None:
        claims["authorization_details"] = [identity.attestation]
    return claims
