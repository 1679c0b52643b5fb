"""Client authentication at the token endpoint (RFC 6749 §2.3, OIDC Core §9, RFC 7523 §3).

- `private_key_jwt`: `client_assertion_type` `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`
  and a `client_assertion` JWT signed by a key in the client's registered JWKS (asymmetric
  algorithms only, matched to the key type), with `iss` = `sub` = client id, `aud` = the token
  endpoint URL, `exp` required and at most 10 minutes ahead, `jti` required and never seen
  before (replayed assertions are refused until they would have expired anyway).
- `client_secret_basic` / `client_secret_post`: the secret checked against its stored hash.
- `none`: a public client names itself with `client_id` (it must then use PKCE).

A client may authenticate only with the method it is registered for.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Mapping
from urllib.parse import unquote_plus

import jwt

from akson.idp.clients import Client, ClientRegistry
from akson.idp.errors import OAuthError, invalid_client
from akson.idp.jwk import algorithm_fits, verification_key
from akson.idp.ttl import TtlMap

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_SECONDS = 600
LEEWAY = 30


def _basic(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise invalid_client("malformed Basic credentials", basic=True) from exc
    user, sep, password = decoded.partition(":")
    if not sep:
        raise invalid_client("malformed Basic credentials", basic=True)
    # RFC 6749 §2.3.1: both parts are form-urlencoded before Base64.
    return unquote_plus(user), unquote_plus(password)


class ClientAuthenticator:
    """Authenticates the client of a token request."""

    def __init__(self, clients: ClientRegistry, replay: TtlMap[str, bool]) -> None:
        self.clients = clients
        self.replay = replay

    async def authenticate(self, form: Mapping[str, str], authorization: str | None,
                           token_endpoint: str, now: int) -> Client:
        basic = _basic(authorization) if authorization else None
        if basic is not None:
            client = self.clients.get(basic[0])
            if client is None or client.auth_method != "client_secret_basic":
                raise invalid_client(basic=True)
            if not await asyncio.to_thread(client.secret_matches, basic[1]):
                raise invalid_client(basic=True)
            return self._same_id(client, form)
        if form.get("client_assertion_type") or form.get("client_assertion"):
            return self._private_key_jwt(form, token_endpoint, now)
        client = self.clients.get(form.get("client_id"))
        if client is None:
            raise invalid_client()
        if client.auth_method == "client_secret_post":
            secret = form.get("client_secret", "")
            if not secret or not await asyncio.to_thread(client.secret_matches, secret):
                raise invalid_client()
            return client
        if client.auth_method != "none" or "client_secret" in form:
            raise invalid_client()
        return client

    @staticmethod
    def _same_id(client: Client, form: Mapping[str, str]) -> Client:
        if form.get("client_id") not in (None, "", client.client_id):
            raise invalid_client()
        return client

    def _private_key_jwt(self, form: Mapping[str, str], token_endpoint: str, now: int) -> Client:
        if form.get("client_assertion_type") != JWT_BEARER:
            raise invalid_client("unsupported client_assertion_type")
        assertion = form.get("client_assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise invalid_client("malformed client assertion") from exc
        client_id = unverified.get("iss")
        client = self.clients.get(client_id if isinstance(client_id, str) else None)
        if client is None or client.auth_method != "private_key_jwt":
            raise invalid_client()
        key = client.key(header.get("kid"))
        alg = header.get("alg")
        if key is None or not isinstance(alg, str) or not algorithm_fits(alg, key):
            raise invalid_client("no registered key fits the client assertion")
        try:
            claims = jwt.decode(
                assertion, verification_key(key), algorithms=[alg], audience=token_endpoint,
                issuer=client.client_id, leeway=LEEWAY,
                options={"require": ["iss", "sub", "aud", "exp", "jti"]})
        except jwt.InvalidAudienceError as exc:
            raise invalid_client("client assertion audience is not the token endpoint") from exc
        except (jwt.PyJWTError, ValueError) as exc:
            raise invalid_client("client assertion did not verify") from exc
        if claims["sub"] != client.client_id:
            raise invalid_client("client assertion sub must equal iss")
        exp = claims["exp"]
        if not isinstance(exp, int | float) or exp > now + MAX_ASSERTION_SECONDS:
            raise invalid_client("client assertion lives too long")
        jti = claims["jti"]
        if not isinstance(jti, str) or not self.replay.add(f"{client.client_id}\n{jti}", True,
                                                            exp + LEEWAY):
            raise invalid_client("client assertion was already used")
        return self._same_id(client, form)


def require_grant(client: Client, grant_type: str) -> None:
    if grant_type not in client.grant_types:
        raise OAuthError("unauthorized_client", "this client may not use this grant type")
