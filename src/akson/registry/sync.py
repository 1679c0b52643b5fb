"""The person-register event consumer: ordered, idempotent, resumable after a crash.

Each event is applied and its sequence recorded as the feed's position in one write transaction
(docs/registers.md, Event feed), so a crash at any instant leaves the store at a clean event
boundary and the next run continues exactly after it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from akson.registry.feed import Event, PersonFeed
from akson.registry.loader import apply_record
from akson.registry.records import RecordError, record_from
from akson.store import sync_state
from akson.store.repository import ResourceStore

log = logging.getLogger("akson.registry.sync")

REGISTER = "freg"
#: A run of 11 or 12 digits in a reason could be a national id (FNR/D-number, DUF): masked so a
#: rejection never stores or logs one, whatever a lower layer put in its message.
_PERSON_NUMBER = re.compile(r"(?<!\d)\d{11,12}(?!\d)")


@dataclass
class SyncResult:
    """What one `sync` call did: events applied, skipped (at or below the position, i.e.
    redelivered), rejected, and the feed's position afterwards."""

    applied: int = 0
    skipped: int = 0
    rejected: int = 0
    position: int = 0

    @property
    def handled(self) -> int:
        """Events applied or rejected (skipped ones cost nothing and do not count)."""
        return self.applied + self.rejected

    def render(self) -> str:
        return (f"Applied {self.applied}, rejected {self.rejected}, skipped {self.skipped}; "
                f"position {self.position}.")


class _Rejected(Exception):
    """An event that cannot be applied; the reason is safe to store and log."""


async def sync(
    store: ResourceStore,
    feed: PersonFeed,
    *,
    feed_name: str = REGISTER,
    allow_synthetic_ids: bool,
    batch: int = 100,
    stop_after: int | None = None,
    on_event: Callable[[SyncResult], None] | None = None,
) -> SyncResult:
    """Consume `feed` from its recorded position until it has nothing newer.

    Events are handled in sequence order; one at or below the position is skipped. A valid event
    is applied (`apply_record`) and the position advanced in one transaction. An event that
    cannot be applied (malformed, or RecordError from parsing or applying) is rolled back and, in
    one transaction, recorded in the rejection table and the position advanced past it. An item
    with no sequence is recorded as a rejection once and does not move the position. Any other
    error (database, feed transport) propagates with the position at the last handled event, so
    a retry continues there. `stop_after` ends the call after that many applied or rejected
    events; `on_event` is called after each event (progress).
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    result = SyncResult()
    async with store.session(write=False) as s:
        result.position = await sync_state.position(s.tx, feed_name)
    while stop_after is None or result.handled < stop_after:
        events = _in_order(await feed.events(result.position, batch), result.position)
        if not any(e.sequence is not None and e.sequence > result.position for e in events):
            for item in events:  # unsequenced items only: nothing newer to apply
                if item.sequence is None:
                    await _reject_unplaced(store, feed_name, item, result)
                else:
                    result.skipped += 1
            break  # caught up: the feed has nothing above the position
        for item in events:
            if stop_after is not None and result.handled >= stop_after:
                break
            if item.sequence is None:
                await _reject_unplaced(store, feed_name, item, result)
                continue
            await _handle(store, feed_name, item, allow_synthetic_ids, result)
            if on_event:
                on_event(result)
    log.info("feed %s: %s", feed_name, result.render())
    return result


def _in_order(events: list[Event], position: int) -> list[Event]:
    """The batch by sequence (a page out of order is put right); an unsequenced item stays right
    after the sequenced item before it, so rejections are recorded in feed order."""
    keyed = []
    previous = position
    for index, item in enumerate(events):
        if item.sequence is not None:
            previous = item.sequence
        keyed.append(((previous, item.sequence is None, index), item))
    return [item for _, item in sorted(keyed, key=lambda pair: pair[0])]


async def _handle(store: ResourceStore, feed_name: str, event: Event, allow_synthetic_ids: bool,
                  result: SyncResult) -> None:
    sequence = event.sequence
    assert sequence is not None
    if sequence <= result.position:  # a duplicate within the batch
        result.skipped += 1
        return
    try:
        if event.problem:
            raise _Rejected(event.problem)
        async with store.session(write=True) as s:
            current = await sync_state.lock(s.tx, feed_name)
            if sequence <= current:  # another consumer of this feed got there first
                result.skipped += 1
                result.position = current
                return
            record = _parse(event)
            await apply_record(s, REGISTER, record, allow_synthetic_ids=allow_synthetic_ids)
            await sync_state.advance(s.tx, feed_name, sequence)
        result.applied += 1
        result.position = sequence
        return
    except (RecordError, _Rejected) as exc:
        reason = _safe(str(exc) or type(exc).__name__)
    # The failed attempt rolled back whatever it wrote; the rejection is its own transaction.
    async with store.session(write=True) as s:
        current = await sync_state.lock(s.tx, feed_name)
        if sequence <= current:
            result.skipped += 1
            result.position = current
            return
        await sync_state.reject(s.tx, feed_name, sequence, reason)
        await sync_state.advance(s.tx, feed_name, sequence)
    result.rejected += 1
    result.position = sequence
    log.warning("feed %s: rejected event %d: %s", feed_name, sequence, reason)


def _parse(event: Event) -> dict:
    """The event's record checked by the register's own parser (types, valid national id)."""
    return record_from(REGISTER, event.record)


def _safe(reason: str) -> str:
    """The reason as stored and logged: any national-id-like digit run masked, length capped."""
    return _PERSON_NUMBER.sub("<person number>", reason)[:1000]


async def _reject_unplaced(store: ResourceStore, feed_name: str, item: Event,
                           result: SyncResult) -> None:
    reason = _safe(item.problem or "no sequence")
    async with store.session(write=True) as s:
        await sync_state.lock(s.tx, feed_name)  # one consumer at a time decides "already recorded"
        new = await sync_state.reject(s.tx, feed_name, None, reason)
    if new:
        result.rejected += 1
        log.warning("feed %s: rejected an item with no sequence: %s", feed_name, reason)
