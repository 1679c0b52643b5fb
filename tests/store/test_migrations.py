"""Schema migrations carry existing data forward (`akson db upgrade`), on both databases."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from akson.store.migrate import upgrade
from tests.conftest import BACKENDS, fresh_database


def _run(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return list(conn.execute(sql.replace("%s", "?"), params))
    import psycopg

    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        cur = conn.execute(sql, params)
        return list(cur) if cur.description else []


@pytest.mark.parametrize("backend", BACKENDS)
def test_0012_keeps_superseded_content_and_drops_the_current_copy(backend: str,
                                                                  tmp_path: Path) -> None:
    """Before 0012 every version row held its JSON; after it, only superseded versions do, and
    the current version is read from `resource` (ADR 0009)."""
    with fresh_database(backend, tmp_path, "akson_mig") as url:
        upgrade(url, "0011")
        _run(url, "INSERT INTO resource (pk, res_type, res_id, version, last_updated, deleted, "
                  "content) VALUES (1, 'Patient', 'p', 2, 2, %s, %s), "
                  "(2, 'Patient', 'gone', 2, 2, %s, NULL)", (False, b'{"v":2}', True))
        _run(url, "INSERT INTO resource_version (res_pk, res_type, res_id, version, last_updated, "
                  "deleted, method, content) VALUES "
                  "(1, 'Patient', 'p', 1, 1, %s, 'POST', %s), (1, 'Patient', 'p', 2, 2, %s, 'PUT', %s), "
                  "(2, 'Patient', 'gone', 1, 1, %s, 'POST', %s), "
                  "(2, 'Patient', 'gone', 2, 2, %s, 'DELETE', NULL)",
             (False, b'{"v":1}', False, b'{"v":2}', False, b'{"g":1}', True))
        upgrade(url)
        rows = _run(url, "SELECT res_id, version, content FROM resource_version "
                         "ORDER BY res_id, version")
        assert [(i, v, bytes(c) if c is not None else None) for i, v, c in rows] == [
            ("gone", 1, b'{"g":1}'), ("gone", 2, None), ("p", 1, b'{"v":1}'), ("p", 2, None)]


def test_a_sqlite_file_is_left_in_wal_mode(tmp_path: Path) -> None:
    """Processes that open the file after `akson db upgrade` need not switch its journal mode
    (a switch waits for every other connection: two registry consumers started at once once
    failed with "database is locked")."""
    url = f"sqlite:///{tmp_path / 'akson.db'}"
    upgrade(url)
    assert _run(url, "PRAGMA journal_mode") == [("wal",)]
