"""Bulk loading of the demo: registers first, then persons in chunks, one transaction per chunk."""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from akson.config import Settings
from akson.fhir.searchparams import SearchParamRegistry
from akson.store.bulk import bulk_create
from akson.store.database import connect
from akson.store.migrate import upgrade
from akson.store.repository import ResourceStore

__all__ = ["Chunk", "LoadStats", "database_has_resources", "in_background", "load", "run"]

Item = tuple[str, str, dict[str, Any]]


@dataclass
class Chunk:
    """A group of whole households: their persons and every resource about them.

    A stream of chunks may start with the register resources (no persons) and end with a chunk
    carrying only `users`, the demo users to print.
    """

    persons: int = 0
    items: list[Item] = field(default_factory=list)
    users: list[Any] | None = None


@dataclass
class LoadStats:
    """What a load wrote and how fast."""

    persons: int = 0
    resources: int = 0
    seconds: float = 0.0
    by_type: Counter[str] = field(default_factory=Counter)
    users: list[Any] = field(default_factory=list)

    @property
    def persons_per_second(self) -> float:
        return self.persons / self.seconds if self.seconds else 0.0

    @property
    def resources_per_second(self) -> float:
        return self.resources / self.seconds if self.seconds else 0.0

    def render(self) -> str:
        types = ", ".join(f"{t} {n}" for t, n in sorted(self.by_type.items()))
        return (f"Loaded {self.persons} persons, {self.resources} resources in "
                f"{self.seconds:.1f} s ({self.persons_per_second:.0f} persons/s, "
                f"{self.resources_per_second:.0f} resources/s).\n  {types}")


async def database_has_resources(store: ResourceStore) -> bool:
    async with store.session(write=False) as s:
        return bool(await s.tx.fetchone("SELECT 1 FROM resource LIMIT 1"))


async def load(store: ResourceStore, chunks: Iterable[Chunk], total_persons: int, *,
               progress: bool = True) -> LoadStats:
    """Write each chunk in its own transaction (`bulk_create`), with a progress bar."""
    stats = LoadStats()
    started = time.perf_counter()
    bar = tqdm(total=total_persons, unit=" persons", desc="demo", disable=not progress)
    try:
        for chunk in chunks:
            if chunk.users is not None:
                stats.users = chunk.users
            if chunk.items:
                await _write(store, chunk.items, stats)
            stats.persons += chunk.persons
            bar.update(chunk.persons)
            bar.set_postfix(resources=stats.resources, refresh=False)
    finally:
        bar.close()
    async with store.session(write=True) as s:  # fresh statistics, or the planner guesses
        await s.analyze()
    stats.seconds = time.perf_counter() - started
    return stats


async def _write(store: ResourceStore, items: list[Item], stats: LoadStats) -> None:
    async with store.session(write=True, bulk=True) as s:
        await bulk_create(s, items, assume_new=True)
    stats.resources += len(items)
    stats.by_type.update(t for t, _, _ in items)


async def _run(settings: Settings, chunks: Callable[[], Iterable[Chunk]], total_persons: int,
               if_empty: bool, progress: bool) -> LoadStats | None:
    registry = SearchParamRegistry.default()
    db = connect(settings.database_url, pool_size=2)
    await db.open()
    try:
        store = ResourceStore(db, registry)
        if if_empty and await database_has_resources(store):
            return None
        return await load(store, chunks(), total_persons, progress=progress)
    finally:
        await db.close()


def run(settings: Settings, chunks: Callable[[], Iterable[Chunk]], total_persons: int, *,
        if_empty: bool = False, progress: bool = True) -> LoadStats | None:
    """Migrate the database and load the chunks `chunks()` makes (called only when loading);
    None when `if_empty` and the database already holds resources."""
    upgrade(settings.database_url)
    return asyncio.run(_run(settings, chunks, total_persons, if_empty, progress))


def _produce(factory: Callable[[], Iterable[Chunk]], out: Any) -> None:
    try:
        for chunk in factory():
            out.put(("chunk", chunk))
        out.put(("done", None))
    except Exception as exc:  # reported to the parent, which raises
        out.put(("error", f"{type(exc).__name__}: {exc}"))


def in_background(factory: Callable[[], Iterable[Chunk]], depth: int = 2) -> Iterator[Chunk]:
    """The chunks of `factory()` (a picklable callable) generated in a child process, so that
    generating the next chunk overlaps with writing this one. At most `depth` chunks wait."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue(maxsize=depth)
    child = ctx.Process(target=_produce, args=(factory, out), daemon=True,
                        name="akson-demo-generator")
    child.start()
    try:
        while True:
            try:
                kind, payload = out.get(timeout=1.0)
            except queue.Empty:
                if not child.is_alive():
                    raise RuntimeError("the demo generator process stopped unexpectedly") from None
                continue
            if kind == "done":
                return
            if kind == "error":
                raise RuntimeError(f"the demo generator failed: {payload}")
            yield payload
    finally:
        if child.is_alive():
            child.terminate()
        child.join()
