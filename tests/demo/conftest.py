"""Demo fixtures: one small generated population, and empty databases to load demos into."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import fresh_database

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
    """An empty database of `backend`: a SQLite file, or on PostgreSQL a database of
    its own (the session's shared one holds other tests' data, and these tests need it empty)."""
    with fresh_database(backend, tmp_path, "akson_demo") as url:
        yield url
