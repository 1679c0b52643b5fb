"""Discovery documents: OpenID Provider metadata, the JWKS and SMART's smart-configuration.

- `/auth/.well-known/openid-configuration` — OIDC Discovery 1.0 §3 / RFC 8414 §2;
- `/auth/jwks` — the public signing keys (RFC 7517), current and previous;
- `/fhir/.well-known/smart-configuration` — SMART App Launch 2.x, conformance.html#metadata;
  answered without a token.
All three are public and allow any origin (browser apps read them).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from akson.idp.attestation import TYPE as ATTESTATION_TYPE
from akson.idp.clients import AUTH_METHODS
from akson.idp.keys import ALGORITHM
from akson.idp.state import ProviderState
from akson.idp.urls import Urls

GRANT_TYPES = ["authorization_code", "refresh_token", "client_credentials"]
CLIENT_ASSERTION_ALGS = ["RS256", "PS256", "ES256"]
DPOP_ALGS = ["ES256", "PS256", "RS256"]
#: SMART v1 and v2 resource scopes plus launch context and identity scopes.
SCOPES = [
    "openid", "profile", "fhirUser", "launch/patient", "offline_access", "online_access",
    "patient/*.read", "patient/*.write", "patient/*.*", "patient/*.rs", "patient/*.cruds",
    "user/*.read", "user/*.write", "user/*.*", "user/*.rs", "user/*.cruds",
    "system/*.read", "system/*.write", "system/*.*", "system/*.rs", "system/*.cruds",
    "helseid://scopes/identity/pid", "helseid://scopes/identity/security_level",
    "helseid://scopes/identity/assurance_level", "helseid://scopes/hpr/hpr_number",
]
CAPABILITIES = [
    "launch-standalone", "client-public", "client-confidential-asymmetric",
    "client-confidential-symmetric", "context-standalone-patient", "sso-openid-connect",
    "permission-offline", "permission-online", "permission-patient", "permission-user",
    "permission-v1", "permission-v2",
]
_PUBLIC = {"Access-Control-Allow-Origin": "*", "Cache-Control": "public, max-age=300"}


def _json(body: dict[str, Any]) -> Response:
    return JSONResponse(body, headers=_PUBLIC)


def openid_configuration(urls: Urls) -> dict[str, Any]:
    return {
        "issuer": urls.issuer,
        "authorization_endpoint": urls.authorize,
        "token_endpoint": urls.token,
        "jwks_uri": urls.jwks,
        "end_session_endpoint": urls.logout,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": GRANT_TYPES,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ALGORITHM],
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": CLIENT_ASSERTION_ALGS,
        "code_challenge_methods_supported": ["S256"],
        "dpop_signing_alg_values_supported": DPOP_ALGS,
        "scopes_supported": SCOPES,
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "sid",
                             "name", "fhirUser", "pid", "acr",
                             "helseid://claims/identity/pid",
                             "helseid://claims/hpr/hpr_number",
                             "helseid://claims/identity/security_level",
                             "helseid://claims/client/claims/orgnr_parent",
                             "helseid://claims/client/claims/orgnr_child"],
        "acr_values_supported": ["idporten-loa-high"],
        "authorization_details_types_supported": [ATTESTATION_TYPE],
        "authorization_response_iss_parameter_supported": True,
        "ui_locales_supported": ["nb"],
    }


def smart_configuration(urls: Urls) -> dict[str, Any]:
    return {
        "issuer": urls.issuer,
        "jwks_uri": urls.jwks,
        "authorization_endpoint": urls.authorize,
        "token_endpoint": urls.token,
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": CLIENT_ASSERTION_ALGS,
        "grant_types_supported": GRANT_TYPES,
        "scopes_supported": SCOPES,
        "response_types_supported": ["code"],
        "capabilities": CAPABILITIES,
        "code_challenge_methods_supported": ["S256"],
        "dpop_signing_alg_values_supported": DPOP_ALGS,
        "end_session_endpoint": urls.logout,
    }


class Discovery:
    def __init__(self, state: ProviderState) -> None:
        self.state = state

    async def openid(self, request: Request) -> Response:
        return _json(openid_configuration(self.state.urls(request)))

    async def jwks(self, request: Request) -> Response:
        return _json(self.state.keys.jwks())

    async def smart(self, request: Request) -> Response:
        return _json(smart_configuration(self.state.urls(request)))
