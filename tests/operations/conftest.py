"""Operation tests run on their own database and export folder (per backend).

A system-level export sees every resource in the database, and a second server on the same
database would also run its export worker; so these tests get a server of their own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import PG_ADMIN, ThreadServer, _pg_admin_connect

from akson.config import Settings
from akson.store.migrate import upgrade


def fresh_database(backend: str, folder: Path) -> Iterator[str]:
    """A new, migrated database URL; a PostgreSQL one is dropped afterwards."""
    if backend == "sqlite":
        url = f"sqlite:///{folder / 'akson.db'}"
        upgrade(url)
        yield url
        return
    import psycopg

    name = f"akson_ops_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        admin = _pg_admin_connect()
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI and could not be reached: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0]
    url = f"postgresql+psycopg://{base.split('://', 1)[1]}/{name}"
    upgrade(url)
    yield url
    with _pg_admin_connect() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    """Overrides the shared server: own database, export files under a temporary folder."""
    folder = tmp_path_factory.mktemp(f"ops-{backend}")
    for url in fresh_database(backend, folder):
        settings = Settings(database_url=url, export_dir=str(folder / "export"))
        with ThreadServer(settings) as srv:
            yield srv
