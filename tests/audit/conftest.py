"""Audit-log fixtures: a migrated database of the test's own per backend, and an opened Database."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from akson.store.audit_log import AuditLog, checkpoint_key
from akson.store.database import Database, connect
from tests.conftest import PG_ADMIN, fresh_database

KEY = checkpoint_key(b"test installation secret")
T = TypeVar("T")


class _Templates:
    """One migrated database per backend for the session; tests get copies of it (a file copy,
    or CREATE DATABASE … TEMPLATE), which is much faster than migrating a database per test."""

    def __init__(self, stack: ExitStack, folder: Path) -> None:
        self.stack, self.folder, self.urls = stack, folder, {}

    def url(self, backend: str) -> str:
        if backend not in self.urls:
            self.urls[backend] = self.stack.enter_context(
                fresh_database(backend, self.folder, "akson_audit_tmpl", migrate=True))
        return self.urls[backend]


@pytest.fixture(scope="session")
def audit_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Templates]:
    with ExitStack() as stack:
        yield _Templates(stack, tmp_path_factory.mktemp("audit_tmpl"))


@pytest.fixture(params=["sqlite", "postgresql"])
def audit_url(request: pytest.FixtureRequest, tmp_path: Path,
              audit_templates: _Templates) -> Iterator[str]:
    """A freshly migrated database of the test's own (tampering tests need one each)."""
    template = audit_templates.url(request.param)
    if request.param == "sqlite":
        path = tmp_path / "akson_audit.db"
        shutil.copyfile(template.split(":///", 1)[1], path)
        yield f"sqlite:///{path}"
        return
    import psycopg

    server, template_name = template.rsplit("/", 1)
    name = f"akson_audit_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"')
    try:
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_audit_url(tmp_path: Path, audit_templates: _Templates) -> str:
    """`audit_url` on SQLite alone: for what only SQLite has (its patient index, ADR 0015)."""
    path = tmp_path / "akson_audit.db"
    shutil.copyfile(audit_templates.url("sqlite").split(":///", 1)[1], path)
    return f"sqlite:///{path}"


@asynccontextmanager
async def opened(url: str, *, chains: int = 4,
                 pool_size: int = 4) -> AsyncIterator[tuple[Database, AuditLog]]:
    """An opened Database on `url` and an AuditLog over `chains` chains, closed after."""
    db = connect(url, pool_size=pool_size)
    await db.open()
    try:
        yield db, AuditLog(db, key=KEY, chains=chains)
    finally:
        await db.close()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a test's coroutine to completion (the tests are plain functions)."""
    return asyncio.run(coro)
