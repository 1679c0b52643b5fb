"""`/auth/logout`: OpenID Connect RP-Initiated Logout 1.0.

GET or POST with `id_token_hint` (an ID token this provider issued; an expired one is fine),
`client_id`, `post_logout_redirect_uri` and `state`. The login session — named by the hint's
`sid`, else by the session cookie — is ended and every refresh token issued in it revoked.
Without a valid `id_token_hint` the user is asked first (§2: a GET from another site must not
log anyone out), and the confirming POST carries a CSRF token. The
user is redirected (303) to `post_logout_redirect_uri` with `state` only when that URI is
registered for the client (§3: never an open redirector); otherwise a "logged out" page shows.
"""

from __future__ import annotations

import logging
from typing import Any

import jwt
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from akson.idp.csrf import COOKIE as CSRF_COOKIE
from akson.idp.keys import ALGORITHM
from akson.idp.login import error_page, render
from akson.idp.sessions import COOKIE as SESSION_COOKIE
from akson.idp.state import ProviderState
from akson.idp.urls import with_query

log = logging.getLogger("akson.idp")


class Logout:
    def __init__(self, state: ProviderState) -> None:
        self.state = state

    def _hint(self, token: str, issuer: str) -> dict[str, Any] | None:
        """The claims of an ID token this provider signed (expiry not checked), or None."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            return None
        key = next((k for k in self.state.keys.keys if k.kid == kid), None)
        if key is None:
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key.private_key.public_key(), algorithms=[ALGORITHM], issuer=issuer,
                options={"verify_exp": False, "verify_aud": False})
        except jwt.PyJWTError:
            return None
        return claims

    def _confirmed(self, request: Request, params: dict[str, str]) -> Response | None:
        """None when this is the user's confirming POST; else the question (or a refusal)."""
        cookie = request.cookies.get(CSRF_COOKIE)
        if request.method == "POST":
            if self.state.csrf.valid(cookie, "logout", params.get("csrf")):
                return None
            return error_page("Utloggingen kunne ikke bekreftes (CSRF). Prøv igjen.", status=403)
        cookie = cookie or self.state.csrf.new_cookie()
        carry = {k: params[k] for k in ("client_id", "post_logout_redirect_uri", "state")
                 if params.get(k)}
        response = render("confirm_logout", title="Logg ut", action=self.state.urls(request).logout,
                          csrf=self.state.csrf.token(cookie, "logout"), carry=carry)
        response.set_cookie(CSRF_COOKIE, cookie, httponly=True, samesite="lax", path="/auth",
                            secure=request.url.scheme == "https")
        return response

    async def handle(self, request: Request) -> Response:
        urls = self.state.urls(request)
        params: dict[str, str] = dict(request.query_params)
        if request.method == "POST":
            form = await request.form()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
        hint = None
        if params.get("id_token_hint"):
            hint = self._hint(params["id_token_hint"], urls.issuer)
            if hint is None:
                return error_page("Utloggingen kunne ikke bekreftes (ugyldig id_token_hint).")
        client_id = params.get("client_id") or (hint or {}).get("aud")
        if hint is not None and params.get("client_id") and params["client_id"] != hint.get("aud"):
            return error_page("client_id passer ikke med id_token_hint.")
        client = self.state.clients.get(client_id if isinstance(client_id, str) else None)
        target = params.get("post_logout_redirect_uri")
        if target and (client is None or target not in client.post_logout_redirect_uris):
            return error_page("Adressen det skal sendes tilbake til etter utlogging er ikke "
                              "registrert for denne klienten.")
        if hint is None:
            confirmed = self._confirmed(request, params)
            if confirmed is not None:
                return confirmed
        session_id = (hint or {}).get("sid") or request.cookies.get(SESSION_COOKIE)
        if isinstance(session_id, str) and session_id:
            ended = self.state.sessions.end(session_id)
            revoked = self.state.refresh.revoke_session(session_id)
            if ended is not None:
                log.info("logout %s refresh_families_revoked=%d", ended.identity.log_name(),
                         revoked)
        response: Response
        if target:
            response = RedirectResponse(with_query(target, {"state": params.get("state")}),
                                        status_code=303)
        else:
            response = render("logged_out", title="Logget ut")
        response.delete_cookie(SESSION_COOKIE, path="/auth")
        return response
