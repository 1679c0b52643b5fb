"""Event-feed positions and rejected events: the SQL behind `akson.registry.sync`."""

from __future__ import annotations

from dataclasses import dataclass

from akson.fhir.dates import now_us
from akson.store.database import Tx


@dataclass(frozen=True, slots=True)
class Rejection:
    """An event (or unplaceable feed item, `sequence` None) that could not be applied, and why."""

    sequence: int | None
    reason: str
    created: int  # µs since epoch, UTC


async def position(tx: Tx, feed: str) -> int:
    """The last sequence handled (applied or rejected) on `feed`; 0 when the feed is unknown."""
    row = await tx.fetchone("SELECT position FROM sync_state WHERE feed = %s", (feed,))
    return int(row[0]) if row else 0


async def lock(tx: Tx, feed: str) -> int:
    """The position of `feed`, with its row locked until `tx` ends (created at 0 if missing).

    Call it first in the write transaction that applies an event: a second consumer of the same
    feed then waits here and sees the advanced position, so no event is applied twice. (SQLite
    write transactions are already exclusive; the statements are the same.)
    """
    await tx.execute(
        "INSERT INTO sync_state (feed, position, updated) VALUES (%s, 0, %s) "
        "ON CONFLICT (feed) DO NOTHING",
        (feed, now_us()),
    )
    lock_sql = " FOR UPDATE" if tx.dialect == "postgresql" else ""
    row = await tx.fetchone(f"SELECT position FROM sync_state WHERE feed = %s{lock_sql}", (feed,))
    return int(row[0]) if row else 0


async def advance(tx: Tx, feed: str, sequence: int) -> None:
    """Record `sequence` as the position of `feed`. Run it in the transaction that applied the
    event, so the change and the position commit together or not at all."""
    await tx.execute(
        "INSERT INTO sync_state (feed, position, updated) VALUES (%s, %s, %s) "
        "ON CONFLICT (feed) DO UPDATE SET position = excluded.position, updated = excluded.updated",
        (feed, sequence, now_us()),
    )


async def reject(tx: Tx, feed: str, sequence: int | None, reason: str) -> bool:
    """Record that an event could not be applied; False (and nothing written) when this exact
    rejection is already recorded, so re-reading an unplaceable item does not repeat it."""
    if sequence is None:
        found = await tx.fetchone(
            "SELECT 1 FROM sync_reject WHERE feed = %s AND sequence IS NULL AND reason = %s",
            (feed, reason),
        )
    else:
        found = await tx.fetchone(
            "SELECT 1 FROM sync_reject WHERE feed = %s AND sequence = %s AND reason = %s",
            (feed, sequence, reason),
        )
    if found:
        return False
    await tx.execute(
        "INSERT INTO sync_reject (feed, sequence, reason, created) VALUES (%s, %s, %s, %s)",
        (feed, sequence, reason, now_us()),
    )
    return True


async def rejections(tx: Tx, feed: str, limit: int = 100) -> list[Rejection]:
    """The latest `limit` rejections on `feed`, in the order they were recorded."""
    rows = await tx.fetchall(
        "SELECT sequence, reason, created FROM sync_reject WHERE feed = %s ORDER BY id DESC "
        "LIMIT %s",
        (feed, limit),
    )
    return [Rejection(r[0], r[1], int(r[2])) for r in reversed(rows)]
