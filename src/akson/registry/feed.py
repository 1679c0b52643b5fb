"""Person-register event feeds: a JSON Lines file, or Persontjenesten's `/api/event` over HTTP."""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

API_VERSION = "2"  # Persontjenesten's `api-version` header (DOMAIN.md §2)


class FeedError(Exception):
    """The feed itself failed (unreachable, refused, answered nonsense): nothing was consumed,
    and the same request can be retried. Messages never carry event content."""


@dataclass(frozen=True, slots=True)
class Event:
    """One item of a feed (docs/registers.md, Event feed).

    `sequence` orders the feed; it is None for an item that carries no usable sequence (e.g. a
    line that is not JSON), which can only be rejected, never placed in the order. `problem` is
    set when the feed already knows the item cannot be applied; it names what is wrong and
    where, never a value from the item (items hold national ids).
    """

    sequence: int | None
    type: str = ""
    nin: str | None = field(default=None, repr=False)
    record: dict[str, Any] | None = field(default=None, repr=False)
    problem: str | None = None


class PersonFeed(Protocol):
    """An ordered source of person-register events."""

    async def events(self, after: int, limit: int) -> list[Event]:
        """Up to `limit` events with a sequence above `after`, ascending (redelivered duplicates
        allowed), plus any unsequenced items met on the way; [] when there is nothing newer."""
        ...

    async def latest(self) -> int | None:
        """The highest sequence the feed holds, when it can tell (for progress); else None."""
        ...


def event_from_json(obj: Any, where: str) -> Event:
    """Read one decoded feed item; a malformed one becomes an Event with a `problem`.

    `where` says where the item was (a line, a page position) for unsequenced items, whose
    rejection has no sequence to identify it.
    """
    if not isinstance(obj, dict):
        return Event(None, problem=f"{where}: not a JSON object")
    sequence = obj.get("sequence")
    if type(sequence) is not int or sequence < 1:  # bool is an int subclass: refuse it too
        return Event(None, problem=f"{where}: no positive integer 'sequence'")
    kind, nin, record = obj.get("type"), obj.get("nin"), obj.get("record")
    problem = None
    if not isinstance(kind, str):
        problem = "malformed event: 'type' must be a string"
    elif not isinstance(nin, str):
        problem = "malformed event: 'nin' must be a string"
    elif not isinstance(record, dict):
        problem = "malformed event: 'record' must be a JSON object"
    elif record.get("nin") != nin:
        problem = "malformed event: 'nin' differs from the record's 'nin'"
    if problem:
        return Event(sequence, problem=problem)
    assert isinstance(kind, str) and isinstance(nin, str) and isinstance(record, dict)
    return Event(sequence, kind, nin, record)


# ---------------------------------------------------------------------------------------- file


@dataclass(frozen=True, slots=True, order=True)
class _Entry:
    """Where one line sits in the feed's order: sequenced lines by sequence, then file order;
    an unsequenced line right after the sequenced line that precedes it in the file."""

    key: int
    unsequenced: bool
    line_no: int
    offset: int = field(compare=False)
    length: int = field(compare=False)


class FileFeed:
    """Events from a JSON Lines file (one event per line, docs/registers.md).

    Lines may be in any order and repeated: they are served by sequence (a repeated sequence is
    served as often as it occurs and the consumer skips the repeats). A line with no sequence is
    served after the sequenced line before it in the file, and again on every later call from
    that position, so a consumer that crashed before recording its rejection still sees it. The
    file is indexed on first use (sequence and byte offset per line, not the events) and indexed
    again when it changes, so a growing file can be followed.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._index: list[_Entry] = []
        self._stamp: tuple[int, int] | None = None

    def _refresh(self) -> None:
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise FeedError(f"cannot read the feed file: {exc.strerror}") from None
        stamp = (stat.st_size, stat.st_mtime_ns)
        if stamp == self._stamp:
            return
        entries: list[_Entry] = []
        previous = 0
        offset = 0
        with self.path.open("rb") as f:
            for line_no, line in enumerate(f, start=1):
                if line.strip():
                    item = _decode(line, f"line {line_no}")
                    if item.sequence is None:
                        entries.append(_Entry(previous, True, line_no, offset, len(line)))
                    else:
                        previous = item.sequence
                        entries.append(_Entry(item.sequence, False, line_no, offset, len(line)))
                offset += len(line)
        entries.sort()
        self._index, self._stamp = entries, stamp

    async def events(self, after: int, limit: int) -> list[Event]:
        self._refresh()
        # First entry at or past the unsequenced lines that follow sequence `after`.
        start = bisect.bisect_left(self._index, (after, True), key=lambda e: (e.key, e.unsequenced))
        out: list[Event] = []
        with self.path.open("rb") as f:
            for entry in self._chosen(start, limit):
                f.seek(entry.offset)
                out.append(_decode(f.read(entry.length), f"line {entry.line_no}"))
        return out

    def _chosen(self, start: int, limit: int) -> Iterator[_Entry]:
        sequenced = 0
        for entry in self._index[start:]:
            if not entry.unsequenced:
                if sequenced == limit:
                    return
                sequenced += 1
            yield entry

    async def latest(self) -> int | None:
        self._refresh()
        keys = [e.key for e in self._index if not e.unsequenced]
        return max(keys) if keys else None


def _decode(line: bytes, where: str) -> Event:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return Event(None, problem=f"{where}: not valid JSON")
    return event_from_json(obj, where)


# ---------------------------------------------------------------------------------------- HTTP


class HttpFeed:
    """Events from a Persontjenesten-style HTTP API (docs/registers.md, Event feed over HTTP).

    `GET {base}/api/event?fromSequenceNumber=N&pageSize=M` answers a JSON array of events with
    sequence ≥ N, ascending; `GET {base}/api/event/latest` answers `{"sequence": N}`. `token`,
    when given, is sent as a bearer token (a HelseID access token in production) and never
    logged. Use as an async context manager, or call `aclose()`.
    """

    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 30.0) -> None:
        import httpx

        headers = {"Accept": "application/json", "api-version": API_VERSION}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), headers=headers,
                                       timeout=timeout)

    async def __aenter__(self) -> HttpFeed:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _get(self, path: str, params: dict[str, int] | None = None) -> Any:
        import httpx

        try:
            resp = await self._http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise FeedError(f"GET {path} failed: {type(exc).__name__}") from None
        if resp.status_code != 200:
            # The body is not echoed: an error page may quote the request or the data.
            raise FeedError(f"GET {path} answered HTTP {resp.status_code}")
        try:
            return orjson.loads(resp.content)
        except orjson.JSONDecodeError:
            raise FeedError(f"GET {path} answered something that is not JSON") from None

    async def events(self, after: int, limit: int) -> list[Event]:
        page = await self._get("/api/event", {"fromSequenceNumber": after + 1, "pageSize": limit})
        if not isinstance(page, list):
            raise FeedError("GET /api/event answered something that is not a JSON array")
        return [event_from_json(item, f"item {i} of the page from sequence {after + 1}")
                for i, item in enumerate(page, start=1)]

    async def latest(self) -> int | None:
        body = await self._get("/api/event/latest")
        sequence = body.get("sequence") if isinstance(body, dict) else None
        return sequence if type(sequence) is int else None
