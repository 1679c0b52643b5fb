"""CSRF protection for the login form: a signed double-submit token bound to the login request.

The browser holds a random cookie (`akson_idp_csrf`, HttpOnly, SameSite=Lax, path `/auth`); each
form carries HMAC(process key, cookie ‖ request id). A forged cross-site POST has neither the
cookie value nor the key, and a token from one login request does not fit another. The key
lives in memory, like the pending login requests it protects.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

COOKIE = "akson_idp_csrf"


class Csrf:
    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    @staticmethod
    def new_cookie() -> str:
        return secrets.token_urlsafe(24)

    def token(self, cookie: str, request_id: str) -> str:
        return hmac.new(self._key, f"{cookie}\n{request_id}".encode(), hashlib.sha256).hexdigest()

    def valid(self, cookie: str | None, request_id: str, token: str | None) -> bool:
        if not cookie or not token:
            return False
        return hmac.compare_digest(self.token(cookie, request_id), token)
