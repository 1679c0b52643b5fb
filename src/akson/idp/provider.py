"""The built-in identity provider as Starlette routes: `/auth/...` and the SMART discovery.

A development and demo provider for ONE process: codes, login sessions, refresh tokens and
replay caches live in memory and vanish on restart (users log in again); signing keys and the
`akson-cli` key live in files (`akson.idp.keys`, `akson.idp.clients`). Production trusts
external issuers (HelseID, ID-porten); this one is just another trusted issuer.

Mount with `IdentityProvider(settings, store=lambda: ctx.store).routes()` in a Starlette app;
`SMART_CONFIGURATION_PATH` must reach the Starlette app rather than the FHIR router.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from akson.config import Settings
from akson.idp.discovery import Discovery
from akson.idp.login import LoginPage
from akson.idp.logout import Logout
from akson.idp.settings import IdpSettings
from akson.idp.state import LoginHook, ProviderState
from akson.idp.token_endpoint import CORS, TokenEndpoint
from akson.idp.ttl import Clock
from akson.idp.urls import SMART_CONFIGURATION_PATH
from akson.store.repository import ResourceStore


async def _preflight(request: Request) -> Response:
    """CORS preflight of the token endpoint (browser SMART apps; no cookies are involved)."""
    return Response(status_code=204, headers={
        **CORS, "Access-Control-Allow-Methods": "POST",
        "Access-Control-Allow-Headers": "Authorization, Content-Type, DPoP",
        "Access-Control-Max-Age": "600"})


class IdentityProvider:
    """Builds the provider's state once and hands out its routes."""

    def __init__(self, settings: Settings, store: Callable[[], ResourceStore], *,
                 idp_settings: IdpSettings | None = None, clock: Clock | None = None,
                 on_login: LoginHook | None = None) -> None:
        self.settings = idp_settings or IdpSettings.from_env(settings)
        if clock is not None:
            self.state = ProviderState(self.settings, store, clock, on_login=on_login)
        else:
            self.state = ProviderState(self.settings, store, on_login=on_login)

    def routes(self) -> list[BaseRoute]:
        login = LoginPage(self.state)
        token = TokenEndpoint(self.state)
        logout = Logout(self.state)
        discovery = Discovery(self.state)
        return [
            Mount("/auth", routes=[
                Route("/.well-known/openid-configuration", discovery.openid),
                Route("/jwks", discovery.jwks),
                Route("/authorize", login.get, methods=["GET"]),
                Route("/authorize", login.post, methods=["POST"]),
                Route("/token", token.post, methods=["POST"]),
                Route("/token", _preflight, methods=["OPTIONS"]),
                Route("/logout", logout.handle, methods=["GET", "POST"]),
            ]),
            Route(SMART_CONFIGURATION_PATH, discovery.smart),
        ]
