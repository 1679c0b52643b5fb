"""Register test fixtures: a migrated database of the test module's own, per backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.conftest import fresh_database


@pytest.fixture(scope="module")
def reg_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database for one test module: a SQLite file or a PostgreSQL database of its
    own (dropped after), so register data never meets other modules' data."""
    with fresh_database(backend, tmp_path_factory.mktemp("registry"), "akson_reg",
                        migrate=True) as url:
        yield url
