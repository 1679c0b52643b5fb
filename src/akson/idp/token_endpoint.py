"""`POST /auth/token` (RFC 6749 §3.2): authorization_code, refresh_token, client_credentials.

- `authorization_code` (§4.1.3): the code is single-use and short-lived, bound to the client and
  the exact `redirect_uri`; the PKCE `code_verifier` must match (RFC 7636 §4.6). A failed
  redemption still uses the code up.
- `refresh_token` (§6): rotating, with reuse detection (`akson.idp.refresh`); an optional
  narrower `scope`.
- `client_credentials` (§4.4): confidential system clients (private_key_jwt or a secret); no
  refresh token.

A `DPoP` proof (RFC 9449 §5) is verified (signature, `htm`, `htu` = the token endpoint, `iat`,
`jti` not replayed; `akson.access.dpop`) and binds the access token to its key (`cnf.jkt`,
`token_type: DPoP`). A refresh token issued with DPoP to a public client can only be used with the
same key. Responses carry `Cache-Control: no-store` (§5.1).
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from akson.access.dpop import verify_dpop_proof
from akson.access.token_error import TokenError
from akson.idp.client_auth import require_grant
from akson.idp.clients import Client
from akson.idp.codes import pkce_matches
from akson.idp.errors import OAuthError, no_store_json
from akson.idp.state import ProviderState
from akson.idp.tokens import Grant
from akson.idp.urls import Urls

log = logging.getLogger("akson.idp")

MAX_FORM_BYTES = 64 * 1024
REFRESH_SCOPES = ("offline_access", "online_access")
CORS = {"Access-Control-Allow-Origin": "*"}


async def _form(request: Request) -> dict[str, str]:
    if request.headers.get("content-type", "").split(";")[0].strip() != \
            "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "the body must be application/x-www-form-urlencoded")
    if int(request.headers.get("content-length") or 0) > MAX_FORM_BYTES:
        raise OAuthError("invalid_request", "the request is too large")
    form = await request.form()
    out: dict[str, str] = {}
    for key, value in form.multi_items():
        if key in out:  # RFC 6749 §3.2: parameters must not be included more than once
            raise OAuthError("invalid_request", "a parameter was given more than once")
        if not isinstance(value, str):
            raise OAuthError("invalid_request", "files are not accepted")
        out[key] = value
    return out


class TokenEndpoint:
    def __init__(self, state: ProviderState) -> None:
        self.state = state

    async def post(self, request: Request) -> Response:
        try:
            body = await self._handle(request)
        except OAuthError as exc:
            response = exc.response()
            response.headers.update(CORS)
            return response
        response = no_store_json(body)
        response.headers.update(CORS)
        return response

    async def _handle(self, request: Request) -> dict[str, Any]:
        urls = self.state.urls(request)
        form = await _form(request)
        now = self.state.now()
        client = await self.state.client_auth.authenticate(
            form, request.headers.get("authorization"), urls.token, now)
        jkt = self._dpop(request, urls, now)
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            require_grant(client, grant_type)
            return self._code(urls, client, form, jkt, now)
        if grant_type == "refresh_token":
            require_grant(client, grant_type)
            return self._refresh(urls, client, form, jkt, now)
        if grant_type == "client_credentials":
            require_grant(client, grant_type)
            return self._client_credentials(urls, client, form, jkt, now)
        raise OAuthError("unsupported_grant_type", "unsupported grant_type")

    def _dpop(self, request: Request, urls: Urls, now: int) -> str | None:
        proof = request.headers.get("dpop")
        if proof is None:
            return None
        try:
            return verify_dpop_proof(proof, method="POST", url=urls.token, now=now,
                                     policy=self.state.dpop).jkt
        except TokenError as exc:
            raise OAuthError("invalid_dpop_proof", f"the DPoP proof was refused ({exc.reason})") \
                from None

    def _tokens(self, urls: Urls, grant: Grant, jkt: str | None, now: int, *,
                nonce: str | None = None, refresh: str | None = None) -> dict[str, Any]:
        access = self.state.minter.access_token(grant, issuer=urls.issuer, now=now, jkt=jkt)
        body: dict[str, Any] = {
            "access_token": access, "token_type": "DPoP" if jkt else "Bearer",
            "expires_in": self.state.settings.access_token_seconds, "scope": grant.scope,
        }
        identity = grant.identity
        if identity is not None:
            if "openid" in grant.scopes:
                body["id_token"] = self.state.minter.id_token(grant, issuer=urls.issuer, now=now,
                                                              nonce=nonce, access_token=access)
            if identity.launch_patient:
                body["patient"] = identity.launch_patient
            if identity.attestation is not None:
                body["authorization_details"] = [identity.attestation]  # RFC 9396 §7
        if refresh is not None:
            body["refresh_token"] = refresh
        return body

    def _code(self, urls: Urls, client: Client, form: dict[str, str], jkt: str | None,
              now: int) -> dict[str, Any]:
        issued = self.state.codes.redeem(form.get("code", ""))
        if issued is None or issued.request.client_id != client.client_id:
            raise OAuthError("invalid_grant", "the code is invalid, expired or already used")
        if form.get("redirect_uri") != issued.request.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri does not match the authorization "
                                              "request")
        if not pkce_matches(form.get("code_verifier", ""), issued.request.code_challenge):
            raise OAuthError("invalid_grant", "the PKCE code_verifier does not match")
        if self.state.sessions.get(issued.session_id) is None:
            raise OAuthError("invalid_grant", "the login session has ended")
        grant = Grant(client.client_id, issued.request.scopes, issued.request.audience,
                      issued.identity, issued.session_id, issued.auth_time)
        refresh = None
        if "refresh_token" in client.grant_types and any(s in grant.scopes
                                                         for s in REFRESH_SCOPES):
            # RFC 9449 §5: a public client's refresh token is bound to its DPoP key.
            refresh = self.state.refresh.issue(grant, jkt if client.public else None)
        log.info("token issued grant=authorization_code client=%s %s", client.client_id,
                 issued.identity.log_name())
        return self._tokens(urls, grant, jkt, now, nonce=issued.request.nonce, refresh=refresh)

    def _refresh(self, urls: Urls, client: Client, form: dict[str, str], jkt: str | None,
                 now: int) -> dict[str, Any]:
        outcome, grant, bound, new = self.state.refresh.rotate(
            form.get("refresh_token", ""), client.client_id, jkt)
        if outcome == "reused":
            log.warning("refresh token reuse detected client=%s: family revoked",
                        client.client_id)
            raise OAuthError("invalid_grant", "refresh token reuse detected; the tokens of this "
                                              "login are revoked")
        if outcome != "ok" or grant is None:
            raise OAuthError("invalid_grant", "the refresh token is invalid, expired, revoked or "
                                              "bound to another DPoP key")
        if form.get("scope"):
            narrower = tuple(dict.fromkeys(form["scope"].split()))
            if not set(narrower) <= set(grant.scopes):
                raise OAuthError("invalid_scope", "scope may only narrow the original grant")
            grant = Grant(grant.client_id, narrower, grant.audience, grant.identity,
                          grant.session_id, grant.auth_time)
        return self._tokens(urls, grant, jkt or bound, now, refresh=new)

    def _client_credentials(self, urls: Urls, client: Client, form: dict[str, str],
                            jkt: str | None, now: int) -> dict[str, Any]:
        if client.public:
            raise OAuthError("unauthorized_client", "a public client cannot use "
                                                    "client_credentials")
        scopes = tuple(dict.fromkeys(form.get("scope", "").split())) or client.scopes
        if not client.grants(scopes):
            raise OAuthError("invalid_scope", "a requested scope is not allowed for this client")
        audience = (form.get("resource") or form.get("aud") or urls.fhir_base).rstrip("/")
        if not self.state.audience_ok(urls, audience):
            raise OAuthError("invalid_target", "resource is not a FHIR server this provider "
                                               "serves")
        log.info("token issued grant=client_credentials client=%s", client.client_id)
        return self._tokens(urls, Grant(client.client_id, scopes, audience), jkt, now)
