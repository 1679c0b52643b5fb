"""Authorization requests waiting for a login, and the one-time codes they end in (PKCE).

RFC 6749 §4.1 with RFC 7636 PKCE, `S256` only: the code is bound to the client, the exact
`redirect_uri` and the `code_challenge`; it is single-use and short-lived (`AKSON_IDP_CODE_SECONDS`,
default 60 s). Codes are random (256 bits) and held in memory (see `akson.idp.ttl`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from akson.idp.identity import Identity
from akson.idp.ttl import Clock, TtlMap

#: RFC 7636 §4.1: 43–128 characters of [A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~".
VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # base64url(SHA-256), no padding
PENDING_SECONDS = 30 * 60  # time to fill in the login page


@dataclass(frozen=True)
class AuthorizationRequest:
    """A validated `/auth/authorize` request, kept until the user has logged in."""

    request_id: str
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None
    nonce: str | None
    code_challenge: str
    audience: str

    @property
    def wants_launch_patient(self) -> bool:
        return "launch/patient" in self.scopes


@dataclass(frozen=True)
class IssuedCode:
    """What a code stands for: the request it answers, who logged in, in which session."""

    request: AuthorizationRequest
    identity: Identity
    session_id: str
    auth_time: int


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


def pkce_matches(verifier: str, challenge: str) -> bool:
    """RFC 7636 §4.6: BASE64URL(SHA256(verifier)) == challenge, for a well-formed verifier."""
    return bool(VERIFIER.match(verifier)) and hmac.compare_digest(s256(verifier), challenge)


class CodeStore:
    """Pending authorization requests and issued codes."""

    def __init__(self, clock: Clock, code_seconds: int) -> None:
        self._clock = clock
        self._code_seconds = code_seconds
        self._pending: TtlMap[str, AuthorizationRequest] = TtlMap(clock)
        self._codes: TtlMap[str, IssuedCode] = TtlMap(clock)

    def new_request_id(self) -> str:
        return secrets.token_urlsafe(24)

    def hold(self, request: AuthorizationRequest) -> None:
        self._pending.put(request.request_id, request, self._clock() + PENDING_SECONDS)

    def pending(self, request_id: str) -> AuthorizationRequest | None:
        return self._pending.get(request_id)

    def discard(self, request_id: str) -> None:
        self._pending.pop(request_id)

    def issue(self, request_id: str, identity: Identity, session_id: str,
              auth_time: int) -> tuple[AuthorizationRequest, str] | None:
        """End a pending request with a code; None when the request is gone (used or expired)."""
        request = self._pending.pop(request_id)
        if request is None:
            return None
        code = secrets.token_urlsafe(32)
        self._codes.put(code, IssuedCode(request, identity, session_id, auth_time),
                        self._clock() + self._code_seconds)
        return request, code

    def redeem(self, code: str) -> IssuedCode | None:
        """The code's grant, once: a second redemption (or an expired code) gets None."""
        return self._codes.pop(code)
