"""Apply Alembic migrations to the configured database (`akson db upgrade`)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic import command
from alembic.config import Config

from akson.store import first_load
from akson.store.database import sqlalchemy_url


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database at `database_url` up to `revision`, creating a SQLite file's folder.

    A SQLite file is left in WAL mode, which the file keeps: processes that open it later need
    not switch it, a switch that waits for every other connection's lock. At the newest
    revision, indexes a first bulk load put off and did not build (it was killed) are built."""
    path = database_url.split(":///", 1)[1] if database_url.startswith("sqlite:///") else ""
    if path == ":memory:":
        path = ""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(_config(database_url), revision)
    if revision == "head":
        first_load.finish(database_url)
    if path:
        conn = sqlite3.connect(path, timeout=30)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        finally:
            conn.close()


def downgrade(database_url: str, revision: str) -> None:
    """Take the database at `database_url` back down to `revision` (tests of migrations)."""
    command.downgrade(_config(database_url), revision)


def _config(database_url: str) -> Config:
    here = Path(__file__).parent
    cfg = Config(str(here / "alembic.ini"))
    cfg.set_main_option("script_location", str(here / "migrations"))
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%"))
    return cfg
