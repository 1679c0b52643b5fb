"""Shared fixtures: a real Akson server on SQLite and on PostgreSQL, and clients for it.

PostgreSQL tests create their own database on the local server (127.0.0.1:5432, trust auth) and
drop it afterwards. In CI (CI=true) a PostgreSQL that cannot be reached is a failure, not a skip.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn

from akson.app import Akson
from akson.config import Settings
from akson.fhir.searchparams import SearchParamRegistry
from akson.store.database import connect
from akson.store.migrate import upgrade
from akson.store.repository import ResourceStore

PG_ADMIN = os.environ.get("AKSON_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ["sqlite", "postgresql"]


def _pg_admin_connect():
    import psycopg

    return psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)


T = TypeVar("T")


def run_on_store(url: str, work: Callable[[ResourceStore], Awaitable[T]], *,
                 pool_size: int = 2) -> T:
    """Run `await work(store)` on a store of its own on `url` (beside a server, not in it)."""
    async def main() -> T:
        db = connect(url, pool_size=pool_size)
        await db.open()
        try:
            return await work(ResourceStore(db, SearchParamRegistry.default()))
        finally:
            await db.close()

    return asyncio.run(main())


@contextmanager
def fresh_database(backend: str, folder: Path, prefix: str = "akson_test", *,
                   migrate: bool = False) -> Iterator[str]:
    """A database of the caller's own: a SQLite file in `folder`, or a PostgreSQL database
    created now and dropped on exit (in CI an unreachable PostgreSQL fails, elsewhere it skips)."""
    if backend == "sqlite":
        url = f"sqlite:///{folder / (prefix + '.db')}"
    else:
        import psycopg

        name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        try:
            admin = _pg_admin_connect()
        except psycopg.OperationalError as exc:
            if os.environ.get("CI"):
                pytest.fail(f"PostgreSQL is required in CI and could not be reached: {exc}")
            pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN}: {exc}")
        with admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        url = f"postgresql+psycopg://{PG_ADMIN.split('://', 1)[1].rsplit('/', 1)[0]}/{name}"
    try:
        if migrate:
            upgrade(url)
        yield url
    finally:
        if backend != "sqlite":
            with _pg_admin_connect() as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    with fresh_database("postgresql", tmp_path_factory.mktemp("pg")) as url:
        yield url


def database_url(backend: str, tmp: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp / 'akson.db'}"
    return str(request.getfixturevalue("pg_url"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerAuth(httpx.Auth):
    """Bearer tokens from the server's own provider for its built-in system client `akson-cli`
    (`system/*.*` unless `scope` narrows it), obtained through the real client-credentials flow
    (`akson token`'s private_key_jwt) and fetched again shortly before they expire. The one
    place tests get a token for "a trusted integration" from."""

    def __init__(self, url: str, key_dir: Path, scope: str | None = None) -> None:
        self.url = url
        self.key_dir = key_dir
        self.scope = scope
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0

    def token(self) -> str:
        from akson.idp.clients import CLI_CLIENT_ID, cli_private_key
        from akson.idp_cli import fetch_token

        with self._lock:
            if self._token is None or time.time() > self._expires - 30:
                body = fetch_token(self.url, CLI_CLIENT_ID, cli_private_key(self.key_dir),
                                   self.scope)
                self._token = str(body["access_token"])
                self._expires = time.time() + int(body["expires_in"])
            return self._token

    @property
    def header(self) -> str:
        return f"Bearer {self.token()}"

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
        request.headers["Authorization"] = self.header
        yield request


def mint_token(server: ThreadServer, *, identity: Any = None,
               client_id: str = "akson-web", scope: str = "openid user/*.cruds") -> str:
    """An access token for a person (`akson.idp.identity.Identity`: a practitioner with an
    attestation, or a citizen), signed by the server's own provider with its current key, as
    its token endpoint would issue it after a login (`TokenMinter`; the login page itself is
    tested in tests/idp). Without `identity`: a client-credentials style token."""
    from akson.idp.tokens import Grant

    grant = Grant(client_id, tuple(scope.split()), f"{server.url}/fhir", identity)
    return server.app.idp.state.minter.access_token(grant, issuer=f"{server.url}/auth",
                                                   now=int(time.time()))


class ThreadServer:
    """Uvicorn serving an Akson app in a background thread, on a free loopback port."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.app = Akson(settings)
        self._auth: dict[str | None, ServerAuth] = {}
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def auth(self, scope: str | None = None) -> ServerAuth:
        """Tokens of this server's built-in system client (see `ServerAuth`), one per scope."""
        if scope not in self._auth:
            self._auth[scope] = ServerAuth(self.url, self.app.idp.settings.key_dir, scope)
        return self._auth[scope]

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        started = threading.Event()

        def wait() -> None:
            while not self.server.started and self.thread.is_alive():
                started.wait(0.02)

        wait()
        if not self.server.started:
            raise RuntimeError("Akson test server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def server(backend: str, tmp_path_factory: pytest.TempPathFactory,
           request: pytest.FixtureRequest) -> Iterator[ThreadServer]:
    url = database_url(backend, tmp_path_factory.mktemp(backend), request)
    upgrade(url)
    settings = Settings(database_url=url, max_body_bytes=2 * 1024 * 1024)
    with ThreadServer(settings) as srv:
        yield srv


@pytest.fixture
def client(server: ThreadServer) -> Iterator[httpx.Client]:
    """An HTTP client on the FHIR base of the running server."""
    with httpx.Client(base_url=server.url + "/fhir", timeout=30, auth=server.auth(),
                      headers={"Accept": "application/fhir+json"}) as c:
        yield c
