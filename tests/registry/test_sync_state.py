"""Feed positions and rejections in the store (migration 0002), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from tests import conftest

from akson.fhir.searchparams import SearchParamRegistry
from akson.store import sync_state
from akson.store.database import connect
from akson.store.migrate import upgrade
from akson.store.repository import ResourceStore


def fresh_database(backend: str, tmp: Path, name: str = "sync") -> Any:
    """A database of the test's own (see tests/conftest.py)."""
    return conftest.fresh_database(backend, tmp, f"akson_{name}")


@asynccontextmanager
async def open_store(url: str) -> AsyncIterator[ResourceStore]:
    db = connect(url, pool_size=2)
    await db.open()
    try:
        yield ResourceStore(db, SearchParamRegistry.default())
    finally:
        await db.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path) as url:
        upgrade(url)
        yield url


def test_positions_start_at_zero_and_advance_per_feed(url: str) -> None:
    async def go() -> None:
        async with open_store(url) as store:
            async with store.session(write=False) as s:
                assert await sync_state.position(s.tx, "freg") == 0
            async with store.session(write=True) as s:
                assert await sync_state.lock(s.tx, "freg") == 0
                await sync_state.advance(s.tx, "freg", 41)
                await sync_state.advance(s.tx, "hpr", 7)
            async with store.session(write=True) as s:
                assert await sync_state.lock(s.tx, "freg") == 41
                await sync_state.advance(s.tx, "freg", 42)
            async with store.session(write=False) as s:
                assert await sync_state.position(s.tx, "freg") == 42
                assert await sync_state.position(s.tx, "hpr") == 7

    asyncio.run(go())


def test_an_advance_rolled_back_with_its_transaction_is_not_recorded(url: str) -> None:
    async def go() -> None:
        async with open_store(url) as store:
            with pytest.raises(RuntimeError):
                async with store.session(write=True) as s:
                    await sync_state.advance(s.tx, "freg", 5)
                    await sync_state.reject(s.tx, "freg", 5, "why")
                    raise RuntimeError("the apply failed")
            async with store.session(write=False) as s:
                assert await sync_state.position(s.tx, "freg") == 0
                assert await sync_state.rejections(s.tx, "freg", 10) == []

    asyncio.run(go())


def test_rejections_are_recorded_once_and_listed_latest_last(url: str) -> None:
    async def go() -> None:
        async with open_store(url) as store:
            async with store.session(write=True) as s:
                assert await sync_state.reject(s.tx, "freg", 3, "bad nin")
                assert await sync_state.reject(s.tx, "freg", None, "line 9: not valid JSON")
                assert not await sync_state.reject(s.tx, "freg", None, "line 9: not valid JSON")
                assert not await sync_state.reject(s.tx, "freg", 3, "bad nin")
                assert await sync_state.reject(s.tx, "freg", 8, "bad status")
                assert await sync_state.reject(s.tx, "hpr", 8, "other feed")
            async with store.session(write=False) as s:
                found = await sync_state.rejections(s.tx, "freg", 10)
                latest = await sync_state.rejections(s.tx, "freg", 2)
        assert [(r.sequence, r.reason) for r in found] == [
            (3, "bad nin"), (None, "line 9: not valid JSON"), (8, "bad status")]
        assert [r.sequence for r in latest] == [None, 8]
        assert all(r.created > 1_600_000_000_000_000 for r in found)  # µs since epoch

    asyncio.run(go())


def test_a_sequence_beyond_32_bits_is_stored(url: str) -> None:
    async def go() -> int:
        async with open_store(url) as store:
            async with store.session(write=True) as s:
                await sync_state.advance(s.tx, "freg", 2**40 + 3)
            async with store.session(write=False) as s:
                return await sync_state.position(s.tx, "freg")

    assert asyncio.run(go()) == 2**40 + 3
