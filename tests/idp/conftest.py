"""A real Akson server with the identity provider mounted, on SQLite and PostgreSQL, with demo data.

`IdpServer` serves the Akson app (`/fhir`, and the provider under `/auth/...` with the SMART
configuration) with the test's provider settings and clock. The registry holds a small generated
demo (one municipality), so the login page finds real practitioners, their workplaces and
citizens.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from akson.app import Akson
from akson.config import Settings
from akson.demo import run_demo
from akson.demo.users import DemoUser
from akson.idp.clients import hash_secret
from akson.idp.jwk import thumbprint
from akson.idp.settings import IdpSettings
from tests.conftest import free_port, fresh_database

REDIRECT = "http://app.test/cb"
POST_LOGOUT = "http://app.test/bye"
BASIC_SECRET = "basic-secret-for-tests"
POST_SECRET = "post-secret-for-tests"


class Clock:
    """The provider's clock: real time plus an offset a test may move (and the fixture resets)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class SystemKey:
    """A test system client's EC key and its public JWK."""

    private: ec.EllipticCurvePrivateKey
    jwk: dict[str, Any]

    @classmethod
    def new(cls) -> SystemKey:
        private = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
        return cls(private, {**jwk, "kid": thumbprint(jwk)})


class IdpServer:
    """Uvicorn serving Akson + the provider in a background thread, on a free loopback port."""

    def __init__(self, settings: Settings, idp_settings: IdpSettings, clock: Clock) -> None:
        self.port = free_port()
        # The provider is the server's own (`akson.app`), with the test's keys, clients and
        # clock: its tokens are the ones the FHIR API trusts.
        self.akson = Akson(settings, idp_settings=idp_settings, idp_clock=clock)
        self.idp = self.akson.idp
        self.clock = clock
        config = uvicorn.Config(self.akson, host="127.0.0.1", port=self.port, log_level="warning",
                                access_log=False, lifespan="on", interface="asgi3")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return f"{self.url}/auth"

    def __enter__(self) -> IdpServer:
        self.thread.start()
        ready = threading.Event()
        while not self.server.started and self.thread.is_alive():
            ready.wait(0.02)
        if not self.server.started:
            raise RuntimeError("test server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@dataclass
class Env:
    server: IdpServer
    users: list[DemoUser]
    system_key: SystemKey
    key_dir: Path
    backend: str

    @property
    def url(self) -> str:
        return self.server.url

    def user(self, role: str) -> DemoUser:
        return next(u for u in self.users if u.role == role)


def _clients_file(folder: Path, system_key: SystemKey) -> Path:
    fast = {"iterations": 1000}  # a low PBKDF2 count keeps the tests quick
    clients = [
        {"client_id": "test-app", "name": "Testappen", "token_endpoint_auth_method": "none",
         "grant_types": ["authorization_code", "refresh_token"], "redirect_uris": [REDIRECT],
         "post_logout_redirect_uris": [POST_LOGOUT],
         "scope": "openid fhirUser launch/patient offline_access patient/*.rs user/*.cruds"},
        {"client_id": "sys-jwt", "token_endpoint_auth_method": "private_key_jwt",
         "grant_types": ["client_credentials"], "scope": "system/*.*",
         "jwks": {"keys": [system_key.jwk]}},
        {"client_id": "sys-basic", "token_endpoint_auth_method": "client_secret_basic",
         "grant_types": ["client_credentials"], "scope": "system/*.rs",
         "client_secret_hash": hash_secret(BASIC_SECRET, **fast)},
        {"client_id": "sys-post", "token_endpoint_auth_method": "client_secret_post",
         "grant_types": ["client_credentials"], "scope": "system/Patient.rs",
         "client_secret_hash": hash_secret(POST_SECRET, **fast)},
    ]
    path = folder / "clients.json"
    path.write_text(json.dumps({"clients": clients}))
    return path


@pytest.fixture(scope="session")
def idp_env(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    folder = tmp_path_factory.mktemp(f"idp-{backend}")
    with fresh_database(backend, folder, "akson_idp") as url:
        settings = Settings(database_url=url)
        # In a thread of its own: run_demo starts an event loop, and the fixture may first be
        # asked for inside a test that runs one already (the browser tests).
        with ThreadPoolExecutor(1) as pool:
            result = pool.submit(run_demo, settings, municipalities=1, persons=40, seed=11,
                                 progress=False, chunk=40, background=False).result()
        assert result is not None
        _, users = result
        system_key = SystemKey.new()
        key_dir = folder / "keys"
        idp_settings = IdpSettings(key_dir=key_dir,
                                   clients_file=str(_clients_file(folder, system_key)))
        with IdpServer(settings, idp_settings, Clock()) as server:
            yield Env(server, users, system_key, key_dir, backend)


@pytest.fixture
def env(idp_env: Env) -> Iterator[Env]:
    yield idp_env
    idp_env.server.clock.offset = 0.0


@pytest.fixture
def http(env: Env) -> Iterator[httpx.Client]:
    """A browser-like client: keeps cookies, does not follow redirects."""
    with httpx.Client(base_url=env.url, timeout=30, follow_redirects=False) as client:
        yield client
