"""Feed sources: the JSON Lines file and the HTTP API (against the fake Persontjenesten)."""

from __future__ import annotations

import asyncio
import os
from datetime import date
from pathlib import Path

import orjson
import pytest
from tests.registry.fake_persontjenesten import FakePersontjenesten
from tests.registry.synth import tenor

from akson.registry.feed import Event, FeedError, FileFeed, HttpFeed, event_from_json

NIN = [tenor(date(1961, 2, 3), 20 * i) for i in range(6)]


def event(seq: int, nin: str = NIN[0], **over: object) -> dict:
    ev = {"sequence": seq, "type": "endret", "nin": nin, "record": {"nin": nin, "status": "bosatt"}}
    ev.update(over)
    return ev


def write_lines(path: Path, lines: list[object]) -> Path:
    path.write_bytes(b"".join(
        (line if isinstance(line, bytes) else orjson.dumps(line)) + b"\n" for line in lines))
    return path


def seqs(events: list[Event]) -> list[int | None]:
    return [e.sequence for e in events]


# ------------------------------------------------------------------------------ decoding


@pytest.mark.parametrize(("obj", "problem"), [
    ([1, 2], "where: not a JSON object"),
    ({"type": "endret"}, "where: no positive integer 'sequence'"),
    ({"sequence": "7"}, "where: no positive integer 'sequence'"),
    ({"sequence": True}, "where: no positive integer 'sequence'"),
    ({"sequence": 0}, "where: no positive integer 'sequence'"),
])
def test_items_without_a_sequence_cannot_be_placed(obj: object, problem: str) -> None:
    assert event_from_json(obj, "where") == Event(None, problem=problem)


@pytest.mark.parametrize(("over", "problem"), [
    ({"type": None}, "malformed event: 'type' must be a string"),
    ({"nin": 1}, "malformed event: 'nin' must be a string"),
    ({"record": "x"}, "malformed event: 'record' must be a JSON object"),
    ({"record": {"nin": NIN[1]}}, "malformed event: 'nin' differs from the record's 'nin'"),
])
def test_malformed_events_keep_their_sequence_and_say_why(over: dict, problem: str) -> None:
    ev = event_from_json(event(9, **over), "where")
    assert (ev.sequence, ev.problem, ev.record) == (9, problem, None)
    assert NIN[0] not in problem and NIN[1] not in problem


def test_a_good_event_is_read_whole_and_its_repr_holds_no_national_id() -> None:
    ev = event_from_json(event(3), "where")
    assert (ev.sequence, ev.type, ev.nin, ev.record, ev.problem) == (
        3, "endret", NIN[0], {"nin": NIN[0], "status": "bosatt"}, None)
    assert NIN[0] not in repr(ev)


# ---------------------------------------------------------------------------------- file


def test_file_feed_serves_by_sequence_after_the_position(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "f.jsonl", [event(s) for s in (4, 1, 3, 2, 6, 5)])
    feed = FileFeed(path)
    assert seqs(asyncio.run(feed.events(0, 4))) == [1, 2, 3, 4]
    assert seqs(asyncio.run(feed.events(4, 4))) == [5, 6]
    assert asyncio.run(feed.events(6, 4)) == []
    assert asyncio.run(feed.latest()) == 6


def test_file_feed_serves_repeats_and_counts_only_sequenced_items_in_the_limit(
        tmp_path: Path) -> None:
    path = write_lines(tmp_path / "f.jsonl", [
        event(1), event(2), b"{not json", event(2), b"", b"[]", event(3), event(4)])
    feed = FileFeed(path)
    first = asyncio.run(feed.events(0, 3))
    assert seqs(first) == [1, 2, 2, None, None]  # lines 3 and 6 sit after sequence 2
    assert [e.problem for e in first if e.sequence is None] == [
        "line 3: not valid JSON", "line 6: not a JSON object"]
    # From position 2 the unsequenced lines after it are served again: a consumer that crashed
    # before recording their rejection still sees them.
    assert seqs(asyncio.run(feed.events(2, 1))) == [None, None, 3]
    assert seqs(asyncio.run(feed.events(3, 10))) == [4]


def test_file_feed_follows_a_growing_file(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "f.jsonl", [event(1)])
    feed = FileFeed(path)
    assert seqs(asyncio.run(feed.events(0, 10))) == [1]
    with path.open("ab") as f:
        f.write(orjson.dumps(event(2)) + b"\n")
    os.utime(path, ns=(1, 2))  # a new stamp even on filesystems with coarse timestamps
    assert seqs(asyncio.run(feed.events(1, 10))) == [2]


def test_a_missing_file_is_a_feed_error(tmp_path: Path) -> None:
    with pytest.raises(FeedError, match="cannot read the feed file"):
        asyncio.run(FileFeed(tmp_path / "gone.jsonl").events(0, 10))


# ---------------------------------------------------------------------------------- HTTP


async def _collect(feed: HttpFeed, after: int, limit: int) -> list[Event]:
    async with feed:
        return await feed.events(after, limit)


def test_http_feed_pages_with_the_documented_query_and_headers() -> None:
    with FakePersontjenesten([event(s) for s in (3, 1, 2)], token="t0ken") as fake:
        feed = HttpFeed(fake.url + "/", token="t0ken")

        async def run() -> tuple[list[Event], list[Event], int | None]:
            async with feed:
                return await feed.events(0, 2), await feed.events(2, 2), await feed.latest()

        first, second, latest = asyncio.run(run())
    assert seqs(first) == [1, 2] and seqs(second) == [3] and latest == 3
    assert first[0].record == {"nin": NIN[0], "status": "bosatt"}
    assert fake.requests == [{"fromSequenceNumber": "1", "pageSize": "2"},
                             {"fromSequenceNumber": "3", "pageSize": "2"}]


def test_http_feed_reads_broken_items_as_problems() -> None:
    with FakePersontjenesten([event(1), "garbage", event(2, record=[])]) as fake:
        got = asyncio.run(_collect(HttpFeed(fake.url), 0, 10))
    assert [(e.sequence, e.problem) for e in got] == [
        (None, "item 1 of the page from sequence 1: not a JSON object"),
        (1, None),
        (2, "malformed event: 'record' must be a JSON object"),
    ]


@pytest.mark.parametrize(("token", "fail", "message"), [
    (None, [], "answered HTTP 401"),
    ("t0ken", [503], "answered HTTP 503"),
])
def test_http_feed_refusals_are_feed_errors(token: str | None, fail: list[int],
                                            message: str) -> None:
    with FakePersontjenesten([event(1)], token="t0ken") as fake:
        fake.fail_next = list(fail)
        with pytest.raises(FeedError, match=message) as err:
            asyncio.run(_collect(HttpFeed(fake.url, token=token), 0, 10))
    assert "t0ken" not in str(err.value)


def test_an_unreachable_server_is_a_feed_error() -> None:
    with FakePersontjenesten([]) as fake:
        url = fake.url
    with pytest.raises(FeedError, match="GET /api/event failed: ConnectError"):
        asyncio.run(_collect(HttpFeed(url), 0, 10))
