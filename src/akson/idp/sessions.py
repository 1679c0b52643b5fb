"""Login sessions at the provider (OIDC `sid`): created at login, ended by RP-initiated logout."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from akson.idp.identity import Identity
from akson.idp.ttl import Clock, TtlMap

COOKIE = "akson_idp_session"


@dataclass(frozen=True)
class LoginSession:
    session_id: str
    identity: Identity
    client_ids: frozenset[str]
    auth_time: int


class SessionStore:
    """Live login sessions by id (also the cookie value)."""

    def __init__(self, clock: Clock, session_seconds: int) -> None:
        self._clock = clock
        self._seconds = session_seconds
        self._sessions: TtlMap[str, LoginSession] = TtlMap(clock)

    def start(self, identity: Identity, client_id: str) -> LoginSession:
        now = int(self._clock())
        session = LoginSession(secrets.token_urlsafe(24), identity, frozenset({client_id}), now)
        self._sessions.put(session.session_id, session, now + self._seconds)
        return session

    def get(self, session_id: str | None) -> LoginSession | None:
        return self._sessions.get(session_id) if session_id else None

    def end(self, session_id: str) -> LoginSession | None:
        return self._sessions.pop(session_id)
