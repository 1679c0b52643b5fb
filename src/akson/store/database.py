"""Async database access with one SQL dialect surface for SQLite and PostgreSQL.

SQL in this package is written with `%s` placeholders (psycopg's); the SQLite adapter rewrites them
to `?`. Values are always bound parameters, never formatted into SQL text.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from akson.fhir.outcome import FhirError

Row = tuple[Any, ...]
Params = Sequence[Any] | Mapping[str, Any]
log = logging.getLogger("akson.store")


def is_retryable(exc: BaseException) -> bool:
    """Did a concurrent writer get there first — a unique key it inserted, or a deadlock the
    database broke by aborting this transaction? Running the transaction again then sees the
    other writer's rows."""
    if isinstance(exc, sqlite3.IntegrityError):
        return "UNIQUE" in str(exc)
    import psycopg

    return isinstance(exc, (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected,
                            psycopg.errors.SerializationFailure))


def _value_refused(exc: BaseException) -> FhirError:
    """A bound value the database cannot hold or compare: the request's fault, so a 400.

    Bad input never yields a 500 (ARCHITECTURE.md, principle 5): a number beyond 64 bits, or a
    NUL character that PostgreSQL text refuses, is reported without echoing the value (requests
    hold personal data).
    """
    log.info("database refused a bound value: %s", type(exc).__name__)
    return FhirError(400, "A value in the request is outside what this server can store or "
                     "search (e.g. a number beyond 64 bits or a NUL character)", "value")


class Tx(Protocol):
    """A unit of work on one connection: all statements commit together or not at all.

    `prepare=False` asks PostgreSQL to plan a statement for its values every time. Searches
    need it: once a statement is prepared, PostgreSQL may switch to one generic plan for all
    values, and a plan good for a rare code is ruinous for a code with 50,000 rows. (None: the
    driver's default, which prepares statements run often — right for reads by id.)
    """

    dialect: str

    async def fetchall(self, sql: str, params: Params = (), *, prepare: bool | None = None
                       ) -> list[Row]: ...
    async def fetchone(self, sql: str, params: Params = (), *, prepare: bool | None = None
                       ) -> Row | None: ...
    async def execute(self, sql: str, params: Params = ()) -> int: ...
    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    async def copy_rows(self, table: str, columns: Sequence[str],
                        rows: Sequence[Sequence[Any]]) -> None: ...
    async def copy_text(self, table: str, columns: Sequence[str], data: bytes) -> None: ...


class HeldWrites(Protocol):
    """A PostgreSQL write transaction's way to send a write with the statement after it.

    A write whose result nobody reads — data-modifying CTEs, `WITH a AS (…), b AS (…)` — is
    held (`hold`) and sent just before the transaction's next statement, or at its end. The
    access gate's audit append joins it instead (`execute_with_held`): one statement for the
    write and its record, so a create is BEGIN, one statement and COMMIT (ADR 0017).
    """

    async def hold(self, ctes: str, params: Mapping[str, Any]) -> None: ...
    async def execute_with_held(self, ctes: str, final: str, params: Mapping[str, Any]
                                ) -> None: ...


class Database(Protocol):
    """Opens units of work; `write=True` ones may change data."""

    dialect: str

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    def transaction(self, *, write: bool, bulk: bool = False) -> Any:
        """An async context manager yielding a Tx; `bulk` ones may use copy_rows."""


def sqlalchemy_url(url: str) -> str:
    """The SQLAlchemy/Alembic form of a database URL (psycopg 3 driver for PostgreSQL)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def connect(url: str, *, pool_size: int = 10) -> Database:
    """Build the Database for a URL: `sqlite:///path` or `postgresql+psycopg://…`."""
    if url.startswith("sqlite:"):
        return SqliteDatabase(sqlite_path(url))
    if url.startswith(("postgresql", "postgres:")):
        return PostgresDatabase(pg_conninfo(url), pool_size=pool_size)
    raise ValueError("AKSON_DATABASE_URL must start with sqlite:/// or postgresql+psycopg://")


def sqlite_path(url: str) -> str:
    path = url.split(":///", 1)[1] if ":///" in url else url.removeprefix("sqlite:")
    return path or ":memory:"


def pg_conninfo(url: str) -> str:
    """Turn a SQLAlchemy-style URL into a libpq URL psycopg understands."""
    parsed = urlparse(url)
    return parsed._replace(scheme="postgresql").geturl().replace(parsed.path, unquote(parsed.path))


# ---------------------------------------------------------------- SQLite


@lru_cache(maxsize=2048)
def _qmark(sql: str) -> str:
    return sql.replace("%s", "?")


@contextmanager
def _sqlite_values() -> Iterator[None]:
    try:
        yield
    except OverflowError as exc:  # an integer parameter beyond SQLite's 64-bit INTEGER
        raise _value_refused(exc) from None


class _SqliteTx:
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def fetchall(self, sql: str, params: Params = (), *, prepare: bool | None = None
                       ) -> list[Row]:
        with _sqlite_values():
            return self._conn.execute(_qmark(sql), params).fetchall()

    async def fetchone(self, sql: str, params: Params = (), *, prepare: bool | None = None
                       ) -> Row | None:
        with _sqlite_values():
            row: Row | None = self._conn.execute(_qmark(sql), params).fetchone()
        return row

    async def execute(self, sql: str, params: Params = ()) -> int:
        with _sqlite_values():
            return self._conn.execute(_qmark(sql), params).rowcount

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            with _sqlite_values():
                self._conn.executemany(_qmark(sql), rows)


    async def copy_rows(self, table: str, columns: Sequence[str],
                        rows: Sequence[Sequence[Any]]) -> None:
        """Bulk insert (SQLite has no COPY; executemany in one transaction is its fast path)."""
        marks = ", ".join("?" * len(columns))
        self._conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    async def copy_text(self, table: str, columns: Sequence[str], data: bytes) -> None:
        raise NotImplementedError("COPY text is PostgreSQL's; SQLite loads rows (copy_rows)")


class SqliteDatabase:
    """Embedded SQLite in WAL mode: one writer at a time (an asyncio lock), readers alongside.

    Statements run synchronously on the event loop: SQLite answers in microseconds, and a
    hop to a thread would cost more than the query. `synchronous=FULL` so an acknowledged write
    survives a crash of the process or the machine.
    """

    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    def _connect(self) -> sqlite3.Connection:
        # A 30 s busy timeout from the start: switching to WAL waits for locks too, and did so
        # for sqlite3's default 5 s only, before `PRAGMA busy_timeout` raised it.
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._writer = self._connect()
        # An in-memory database is private to its connection, so readers share the writer.
        self._reader = self._writer if self.path == ":memory:" else self._connect()

    async def close(self) -> None:
        for conn in {id(c): c for c in (self._reader, self._writer) if c}.values():
            conn.close()
        self._writer = self._reader = None

    @asynccontextmanager
    async def transaction(self, *, write: bool, bulk: bool = False) -> AsyncIterator[Tx]:
        assert self._writer is not None and self._reader is not None, "database not opened"
        if not write:
            # Each statement sees a consistent snapshot; read-only work needs nothing more.
            yield _SqliteTx(self._reader)
            return
        async with self._lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield _SqliteTx(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")


# ---------------------------------------------------------------- PostgreSQL


@contextmanager
def _pg_values() -> Iterator[None]:
    import psycopg

    try:
        yield
    except psycopg.DataError as exc:  # SQLSTATE class 22, or a NUL refused before sending
        raise _value_refused(exc) from None


class _PgTx:
    """Tx and HeldWrites on one psycopg connection."""

    dialect = "postgresql"

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._held: tuple[str, Mapping[str, Any]] | None = None

    async def hold(self, ctes: str, params: Mapping[str, Any]) -> None:
        await self.send_held()
        self._held = (ctes, params)

    async def execute_with_held(self, ctes: str, final: str, params: Mapping[str, Any]
                                ) -> None:
        held, self._held = self._held, None
        if held is not None:  # ctes begins with WITH: the held ones go first, in its list
            ctes, params = f"{held[0]},\n{ctes.removeprefix('WITH ')}", {**held[1], **params}
        with _pg_values():
            await self._conn.execute(f"{ctes}\n{final}", params)

    async def send_held(self) -> None:
        """Send the held write now (before any other statement, and at the end)."""
        if self._held is not None:
            ctes, params = self._held
            self._held = None
            with _pg_values():
                await self._conn.execute(f"{ctes}\nSELECT 1", params)

    async def fetchall(self, sql: str, params: Params = (), *, prepare: bool | None = None
                       ) -> list[Row]:
        await self.send_held()
        with _pg_values():
            # Binary results: stored JSON (bytea) arrives as bytes, without hex decoding.
            # `prepare=False`: planned for these values every time (see Tx docstring).
            cur = await self._conn.execute(sql, params, binary=True, prepare=prepare)
            rows: list[Row] = await cur.fetchall()
        return rows

    async def fetchone(self, sql: str, params: Params = (), *, prepare: bool | None = None
                       ) -> Row | None:
        await self.send_held()
        with _pg_values():
            cur = await self._conn.execute(sql, params, binary=True, prepare=prepare)
            row: Row | None = await cur.fetchone()
        return row

    async def execute(self, sql: str, params: Params = ()) -> int:
        await self.send_held()
        with _pg_values():
            cur = await self._conn.execute(sql, params)
        return int(cur.rowcount)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self.send_held()
        if rows:
            with _pg_values():
                async with self._conn.cursor() as cur:
                    await cur.executemany(sql, rows)


    async def copy_rows(self, table: str, columns: Sequence[str],
                        rows: Sequence[Sequence[Any]]) -> None:
        """Bulk insert with COPY: the fastest way into PostgreSQL, still inside the transaction."""
        await self.send_held()
        if not rows:
            return
        with _pg_values():
            async with self._conn.cursor() as cur, cur.copy(
                f"COPY {table} ({', '.join(columns)}) FROM STDIN"
            ) as copy:
                for row in rows:
                    await copy.write_row(row)


    async def copy_text(self, table: str, columns: Sequence[str], data: bytes) -> None:
        """COPY rows already in PostgreSQL's text format (one line per row) into `table`."""
        await self.send_held()
        async with self._conn.cursor() as cur, cur.copy(
            f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        ) as copy:
            await copy.write(data)


class PostgresDatabase:
    """PostgreSQL through psycopg 3 with an async connection pool."""

    dialect = "postgresql"

    def __init__(self, conninfo: str, *, pool_size: int = 10) -> None:
        from psycopg_pool import AsyncConnectionPool

        # Autocommit: a read is one round trip (no BEGIN/COMMIT); writes open explicit transactions.
        # No JIT: it compiled for 50-70 ms on searches that run in 20-300 ms at a million
        # resources, a loss on every such request (docs/adr/0011).
        self._pool = AsyncConnectionPool(
            conninfo, min_size=min(2, pool_size), max_size=pool_size, open=False,
            kwargs={"autocommit": True, "options": "-c jit=off"},
        )

    async def open(self) -> None:
        await self._pool.open(wait=True, timeout=15)

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def transaction(self, *, write: bool, bulk: bool = False) -> AsyncIterator[Tx]:
        if not write:
            # An autocommit connection needs no transaction for a read, nor the commit the
            # pool's `connection()` runs on leaving it (a lock and a status check per read).
            # `putconn` still rolls back a connection left in a transaction and drops a broken one.
            read = await self._pool.getconn()
            try:
                yield _PgTx(read)
            finally:
                await self._pool.putconn(read)
            return
        async with self._pool.connection() as conn:
            tx = _PgTx(conn)
            if bulk:  # COPY cannot run in pipeline mode
                async with conn.transaction():
                    yield tx
                    await tx.send_held()
            else:
                # Pipeline mode: BEGIN, the statements whose results nobody reads, and COMMIT
                # go out without waiting for each other; a plain create is one round trip
                # instead of three.
                async with conn.pipeline(), conn.transaction():
                    yield tx
                    await tx.send_held()
