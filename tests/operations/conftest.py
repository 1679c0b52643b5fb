"""Operation tests run on their own database and export folder (per backend).

A system-level export sees every resource in the database, and a second server on the same
database would also run its export worker; so these tests get a server of their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests import conftest
from tests.conftest import ThreadServer

from akson.config import Settings


def fresh_database(backend: str, folder: Path) -> Iterator[str]:
    """A new, migrated database URL; a PostgreSQL one is dropped afterwards."""
    with conftest.fresh_database(backend, folder, "akson_ops", migrate=True) as url:
        yield url


@pytest.fixture(scope="session")
def server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    """Overrides the shared server: own database, export files under a temporary folder."""
    folder = tmp_path_factory.mktemp(f"ops-{backend}")
    for url in fresh_database(backend, folder):
        settings = Settings(database_url=url, export_dir=str(folder / "export"))
        with ThreadServer(settings) as srv:
            yield srv
