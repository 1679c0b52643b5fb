"""One-time keys shared by every server process on a database (table `replay_guard`,
migration 0013): the DPoP proof `jti`s a resource server has accepted (RFC 9449 §11.1).

An in-process cache lets a proof replayed to another worker, or another server behind the
same load balancer, through. Here the check-and-record is one `INSERT … ON CONFLICT DO UPDATE
… WHERE expired` statement, atomic across processes. It runs on a small synchronous
connection of its own, because token verification is synchronous (it may run in a thread); a
lock serialises its users within the process.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from typing import Any

from akson.store.database import pg_conninfo, sqlite_path

log = logging.getLogger("akson.store")

_CLAIM = ("INSERT INTO replay_guard (key, expires_at) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE "
          "SET expires_at = excluded.expires_at WHERE replay_guard.expires_at <= %s "
          "RETURNING key")
_SWEEP = "DELETE FROM replay_guard WHERE expires_at <= %s"
#: Seconds between sweeps of expired keys.
SWEEP_SECONDS = 60.0


class DatabaseReplayCache:
    """A `akson.access.dpop.ReplayCache` in the database at `url` (SQLite or PostgreSQL).

    Fails closed: when the database cannot be reached the key counts as seen, so a proof is
    refused rather than possibly replayed."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.Lock()
        self._conn: Any = None
        self._next_sweep = 0.0

    def add(self, key: str, expires_at: float, now: float) -> bool:
        with self._lock:
            for attempt in (1, 2):  # a dropped connection is opened again once
                try:
                    return self._claim(key, expires_at, now)
                except Exception as exc:  # noqa: BLE001 - any database failure fails closed
                    self._close()
                    if attempt == 2:
                        log.error("replay guard unavailable type=%s", type(exc).__name__)
            return False

    def _claim(self, key: str, expires_at: float, now: float) -> bool:
        conn = self._connection()
        if now >= self._next_sweep:
            self._execute(conn, _SWEEP, (now,))
            self._next_sweep = now + SWEEP_SECONDS
        return bool(self._execute(conn, _CLAIM, (key, expires_at, now)))

    def _execute(self, conn: Any, sql: str, params: tuple[Any, ...]) -> list[Any]:
        if isinstance(conn, sqlite3.Connection):
            return conn.execute(sql.replace("%s", "?"), params).fetchall()
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []

    def _connection(self) -> Any:
        if self._conn is None:
            if self.url.startswith("sqlite:"):
                self._conn = sqlite3.connect(sqlite_path(self.url), isolation_level=None,
                                             check_same_thread=False, timeout=30)
            else:
                import psycopg

                self._conn = psycopg.connect(pg_conninfo(self.url), autocommit=True,
                                             connect_timeout=5)
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def close(self) -> None:
        with self._lock:
            self._close()
