"""Rotating refresh tokens with reuse detection (OAuth 2.0 Security BCP, RFC 9700 §4.14.2).

Every use of a refresh token returns a new one of the same family and retires the old one. A
retired token presented again means it leaked: the whole family is revoked, so neither the
thief nor the user can go on with it (the user logs in again). Logout revokes every family of
the login session. A family issued with DPoP stays bound to that key (RFC 9449 §5). Only a
SHA-256 of each token is kept.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass
from typing import Literal

from akson.idp.tokens import Grant
from akson.idp.ttl import Clock


@dataclass
class _Family:
    grant: Grant
    jkt: str | None
    expires_at: float
    current: str  # hash of the live token
    revoked: bool = False


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


Outcome = Literal["ok", "invalid", "reused"]


class RefreshTokens:
    """Refresh token families in memory."""

    def __init__(self, clock: Clock, lifetime_seconds: int) -> None:
        self._clock = clock
        self._lifetime = lifetime_seconds
        self._families: dict[str, _Family] = {}
        self._by_token: dict[str, str] = {}  # token hash → family id (live and retired)
        self._lock = threading.Lock()

    def issue(self, grant: Grant, jkt: str | None) -> str:
        """A new family with its first token."""
        token = secrets.token_urlsafe(32)
        family_id = secrets.token_hex(16)
        with self._lock:
            self._purge()
            self._families[family_id] = _Family(grant, jkt, self._clock() + self._lifetime,
                                                _hash(token))
            self._by_token[_hash(token)] = family_id
        return token

    def rotate(self, token: str, client_id: str, jkt: str | None
               ) -> tuple[Outcome, Grant | None, str | None, str | None]:
        """Use `token`: ("ok", grant, family's DPoP jkt, new token), or ("reused"|"invalid", …).

        A token of another client, or of a DPoP-bound family presented without that key, is
        "invalid" and changes nothing (a stolen token is useless without the key, and a client
        must not be able to revoke someone else's session by guessing).
        """
        hashed = _hash(token)
        with self._lock:
            family_id = self._by_token.get(hashed)
            family = self._families.get(family_id) if family_id else None
            if family is None or family.grant.client_id != client_id:
                return "invalid", None, None, None
            if family.jkt is not None and family.jkt != jkt:
                return "invalid", None, None, None
            if family.revoked or family.expires_at <= self._clock():
                return "invalid", None, None, None
            if family.current != hashed:
                family.revoked = True
                return "reused", None, None, None
            new = secrets.token_urlsafe(32)
            family.current = _hash(new)
            self._by_token[family.current] = family_id  # type: ignore[assignment]
            return "ok", family.grant, family.jkt, new

    def revoke_session(self, session_id: str) -> int:
        """Revoke every family issued in this login session; returns how many."""
        with self._lock:
            hit = [f for f in self._families.values()
                   if f.grant.session_id == session_id and not f.revoked]
            for family in hit:
                family.revoked = True
            return len(hit)

    def _purge(self) -> None:
        now = self._clock()
        dead = {fid for fid, f in self._families.items() if f.expires_at <= now}
        if dead:
            for fid in dead:
                del self._families[fid]
            self._by_token = {h: fid for h, fid in self._by_token.items() if fid not in dead}
