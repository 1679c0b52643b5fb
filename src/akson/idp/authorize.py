"""Validating an authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3, OIDC Core §3.1.2.1).

An unknown client or a `redirect_uri` that is not exactly one the client registered is shown to
the user on an error page and never redirected to (RFC 6749 §4.1.2.1: an open redirector
otherwise). Every other error goes back to the client's `redirect_uri` as `error=…&state=…`.
PKCE with `S256` is required of every client. `aud` (SMART) or `resource` (RFC 8707) names the
FHIR server the token is for; it must be this server's FHIR base or a configured audience, and
defaults to this server's FHIR base.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from akson.idp.codes import CHALLENGE, AuthorizationRequest
from akson.idp.state import ProviderState
from akson.idp.urls import Urls

MAX_PARAM = 2048


@dataclass
class PageError(Exception):
    """An error shown on the provider's own page (status 400), never redirected."""

    message: str


@dataclass
class RedirectError(Exception):
    """An error sent back to the client's redirect URI."""

    redirect_uri: str
    error: str
    description: str
    state: str | None


def validate(state: ProviderState, urls: Urls, params: Mapping[str, str]) -> AuthorizationRequest:
    """A stored-to-be AuthorizationRequest, or PageError / RedirectError."""
    if any(len(v) > MAX_PARAM for v in params.values()):
        raise PageError("Forespørselen er for lang.")
    client = state.clients.get(params.get("client_id"))
    if client is None:
        raise PageError("Ukjent klient (client_id).")
    redirect_uri = params.get("redirect_uri", "")
    if redirect_uri not in client.redirect_uris:
        raise PageError("Adressen det skal sendes tilbake til (redirect_uri) er ikke registrert "
                        "for denne klienten.")
    req_state = params.get("state")

    def fail(error: str, description: str) -> RedirectError:
        return RedirectError(redirect_uri, error, description, req_state)

    if params.get("response_type") != "code":
        raise fail("unsupported_response_type", "only response_type=code is supported")
    if "authorization_code" not in client.grant_types:
        raise fail("unauthorized_client", "this client may not use the authorization code grant")
    challenge = params.get("code_challenge", "")
    if params.get("code_challenge_method") != "S256" or not CHALLENGE.match(challenge):
        raise fail("invalid_request", "PKCE with code_challenge_method=S256 is required")
    scopes = tuple(dict.fromkeys(params.get("scope", "").split()))
    if not scopes or not client.grants(scopes):
        raise fail("invalid_scope", "a requested scope is not allowed for this client")
    audience = (params.get("aud") or params.get("resource") or urls.fhir_base).rstrip("/")
    if not state.audience_ok(urls, audience):
        raise fail("invalid_request", "aud/resource is not a FHIR server this provider serves")
    return AuthorizationRequest(state.codes.new_request_id(), client.client_id, redirect_uri,
                                scopes, req_state, params.get("nonce"), challenge, audience)
