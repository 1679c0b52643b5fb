"""Helpers for the register tests: fixture data path and a store runner."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from akson.fhir.searchparams import SearchParamRegistry
from akson.store.database import connect
from akson.store.repository import ResourceStore

DATA = Path(__file__).parent / "data"
T = TypeVar("T")


def run_with_store(url: str, fn: Callable[[ResourceStore], Awaitable[T]]) -> T:
    """Run `fn(store)` on a fresh event loop with a store opened on `url`, then close it."""

    async def go() -> T:
        db = connect(url, pool_size=4)
        await db.open()
        try:
            return await fn(ResourceStore(db, SearchParamRegistry.default()))
        finally:
            await db.close()

    return asyncio.run(go())
