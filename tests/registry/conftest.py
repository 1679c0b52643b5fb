"""Register test fixtures: a migrated database of the test module's own, per backend."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from akson.store.migrate import upgrade

PG_ADMIN = os.environ.get("AKSON_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="module")
def reg_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database for one test module: a SQLite file or a PostgreSQL database of its
    own (dropped after), so register data never meets other modules' data."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('registry') / 'reg.db'}"
        upgrade(url)
        yield url
        return
    import psycopg

    name = f"akson_reg_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI and could not be reached: {exc}")
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://{PG_ADMIN.split('://', 1)[1].rsplit('/', 1)[0]}/{name}"
    upgrade(url)
    yield url
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
