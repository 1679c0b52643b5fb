"""Demo fixtures: one small generated population, and empty databases to load demos into."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import PG_ADMIN, database_url

from akson.demo import Demo, build_demo
from akson.demo.services import Item


@dataclass
class Generated:
    demo: Demo
    registers: list[Item]
    persons: list[Item]

    @property
    def items(self) -> list[Item]:
        return self.registers + self.persons

    def of_type(self, res_type: str) -> list[dict]:
        return [r for t, _, r in self.items if t == res_type]


@pytest.fixture(scope="session")
def generated() -> Generated:
    """Two municipalities, 600 persons, seed 7: registers and every person chunk."""
    demo = build_demo(municipalities=2, persons=600, seed=7)
    registers = demo.register_items()
    persons = [item for chunk in demo.chunks(150) for item in chunk.items]
    return Generated(demo, registers, persons)


@pytest.fixture
def empty_db(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty database of `backend`: SQLite from `database_url`; on PostgreSQL a database of
    its own (the session's shared one holds other tests' data, and these tests need it empty)."""
    if backend == "sqlite":
        yield database_url(backend, tmp_path, request)
        return
    import psycopg

    name = f"akson_demo_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI and could not be reached: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0]
    yield f"postgresql+psycopg://{base.split('://', 1)[1]}/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
