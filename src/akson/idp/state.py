"""Everything the provider's endpoints share: settings, keys, clients and in-memory state."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.requests import Request

from akson.access.dpop import DpopPolicy, MemoryReplayCache
from akson.idp.client_auth import ClientAuthenticator
from akson.idp.clients import ClientRegistry
from akson.idp.codes import CodeStore
from akson.idp.csrf import Csrf
from akson.idp.identity import Identity
from akson.idp.keys import KeyRing
from akson.idp.refresh import RefreshTokens
from akson.idp.sessions import SessionStore
from akson.idp.settings import IdpSettings
from akson.idp.tokens import TokenMinter
from akson.idp.ttl import Clock, TtlMap
from akson.idp.urls import Urls
from akson.store.repository import ResourceStore

#: Called after each completed login with who logged in and the client (the composition root
#: audits it as an AuditEvent of subtype `login`).
LoginHook = Callable[[Identity, str], Awaitable[None]]


@dataclass
class ProviderState:
    """The provider's parts. In-memory state is for one process (see `akson.idp.ttl`)."""

    settings: IdpSettings
    store: Callable[[], ResourceStore]
    clock: Clock = time.time
    keys: KeyRing = field(init=False)
    clients: ClientRegistry = field(init=False)
    minter: TokenMinter = field(init=False)
    codes: CodeStore = field(init=False)
    sessions: SessionStore = field(init=False)
    refresh: RefreshTokens = field(init=False)
    client_auth: ClientAuthenticator = field(init=False)
    dpop: DpopPolicy = field(init=False)
    csrf: Csrf = field(init=False)
    on_login: LoginHook | None = None

    def __post_init__(self) -> None:
        self.keys = KeyRing(self.settings.key_dir)
        self.clients = ClientRegistry.load(self.settings.key_dir, self.settings.clients_file)
        self.minter = TokenMinter(self.keys, self.settings.access_token_seconds)
        self.codes = CodeStore(self.clock, self.settings.code_seconds)
        self.sessions = SessionStore(self.clock, self.settings.session_seconds)
        self.refresh = RefreshTokens(self.clock, self.settings.refresh_token_seconds)
        self.client_auth = ClientAuthenticator(self.clients, TtlMap(self.clock))
        self.dpop = DpopPolicy(MemoryReplayCache())
        self.csrf = Csrf()

    def urls(self, request: Request) -> Urls:
        return Urls.of(request, self.settings.issuer)

    def now(self) -> int:
        return int(self.clock())

    def audience_ok(self, urls: Urls, audience: str) -> bool:
        return audience.rstrip("/") in (urls.fhir_base, *self.settings.audiences)
