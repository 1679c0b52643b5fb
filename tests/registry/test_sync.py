"""The person-register event consumer on SQLite and PostgreSQL: ordered, idempotent, rejecting.

Each test gets a database of its own (a SQLite file, or a PostgreSQL database dropped after), so
positions and persons never leak between tests. The state compared between runs is every stored
version of every resource (type, id, version, deletion, content without lastUpdated).
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.registry.fake_persontjenesten import FakePersontjenesten
from tests.registry.synth import tenor
from tests.registry.test_sync_state import fresh_database, open_store

from akson.fhir.naming import FNR_SYSTEM
from akson.registry import sync as sync_module
from akson.registry.feed import FeedError, FileFeed, HttpFeed, PersonFeed
from akson.registry.records import RecordError
from akson.registry.sync import SyncResult, sync
from akson.store import sync_state
from akson.store.migrate import upgrade

# ----------------------------------------------------------------------------- databases


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database of this test's own."""
    with fresh_database(request.param, tmp_path) as url:
        upgrade(url)
        yield url


def run_sync(url: str, feed: PersonFeed, **kw: Any) -> SyncResult:
    async def go() -> SyncResult:
        async with open_store(url) as store:
            return await sync(store, feed, allow_synthetic_ids=kw.pop("allow", True), **kw)

    return asyncio.run(go())


def position(url: str, feed: str = "freg") -> int:
    async def go() -> int:
        async with open_store(url) as store, store.session(write=False) as s:
            return await sync_state.position(s.tx, feed)

    return asyncio.run(go())


def rejections(url: str, feed: str = "freg") -> list[tuple[int | None, str]]:
    async def go() -> list[tuple[int | None, str]]:
        async with open_store(url) as store, store.session(write=False) as s:
            return [(r.sequence, r.reason) for r in await sync_state.rejections(s.tx, feed, 1000)]

    return asyncio.run(go())


def state(url: str) -> list[tuple[str, str, int, bool, Any]]:
    """Every stored version, oldest first, without the write time (which differs between runs)."""

    async def go() -> list[tuple[str, str, int, bool, Any]]:
        out = []
        async with open_store(url) as store, store.session(write=False) as s:
            cursor = None
            while True:
                page = await s.history(None, None, since=None, count=500, cursor=cursor)
                for v in page.items:
                    content = orjson.loads(v.content) if v.content else None
                    if content:
                        content["meta"].pop("lastUpdated", None)
                    out.append((v.res_type, v.res_id, v.version, v.deleted, content))
                cursor = page.next_cursor
                if cursor is None:
                    return out[::-1]

    return asyncio.run(go())


def patients_by_nin(versions: list[tuple[str, str, int, bool, Any]]) -> dict[str, dict]:
    """The current Patient of each national id, without its server-chosen (random) id; fails if
    one national id has two Patients."""
    current: dict[str, tuple[int, dict]] = {}
    for res_type, res_id, version, deleted, content in versions:
        if res_type == "Patient" and not deleted:
            prev = current.get(res_id)
            if prev is None or prev[0] < version:
                current[res_id] = (version, content)
    out: dict[str, dict] = {}
    for _, content in current.values():
        nins = [i["value"] for i in content["identifier"] if i["system"] == FNR_SYSTEM]
        assert len(nins) == 1
        assert nins[0] not in out, "two Patients for one national id"
        out[nins[0]] = {k: v for k, v in content.items() if k != "id"}
    return out


# -------------------------------------------------------------------------------- events


def nins(n: int) -> list[str]:
    """`n` distinct synthetic (Tenor) national ids."""
    return [tenor(date(1950, 1, 1) + timedelta(days=i // 20), (i % 20) * 20 + 1) for i in range(n)]


def person(nin: str, version: int, **over: Any) -> dict:
    rec = {
        "nin": nin, "status": "bosatt", "birth_date": None, "gender": "female",
        "name": {"given": "Testa", "middle": None, "family": "Feedsen"},
        "address": {"lines": [f"Feedgata {version}"], "postal_code": "0155", "city": "Oslo",
                    "municipality": "0301", "from": f"{2000 + version}-01-01"},
        "address_protection": "unclassified", "death_date": None,
        "family": [], "parental_responsibility": [], "guardianship": [],
    }
    rec.update(over)
    return rec


def event(seq: int, record: dict, kind: str = "endret") -> dict:
    return {"sequence": seq, "type": kind, "nin": record["nin"], "record": record}


def feed_events(people: list[str], versions: int, *, shuffle: int | None = None) -> list[dict]:
    """`versions` records per person, sequences 1..n; person order shuffled per version round
    when `shuffle` seeds it, so each person's records are spread over the feed."""
    out = []
    for v in range(1, versions + 1):
        order = list(people)
        if shuffle is not None:
            random.Random(shuffle + v).shuffle(order)
        for nin in order:
            out.append(event(len(out) + 1, person(nin, v)))
    return out


def write_feed(path: Path, events: list[Any]) -> Path:
    path.write_bytes(b"".join(
        (e if isinstance(e, bytes) else orjson.dumps(e)) + b"\n" for e in events))
    return path


def street(patient: dict) -> str:
    return str(patient["address"][0]["line"][0])


# --------------------------------------------------------------------------------- tests


def test_applying_a_feed_twice_changes_nothing_the_second_time(db_url: str, tmp_path: Path) -> None:
    people = nins(10)
    family = person(people[0], 3, family=[{"nin": people[1], "relation": "mor"}],
                    parental_responsibility=[], guardianship=[{"guardian_nin": people[2]}])
    events = [*feed_events(people, 3, shuffle=1), event(31, family)]
    path = write_feed(tmp_path / "events.jsonl", events)

    first = run_sync(db_url, FileFeed(path), batch=7)
    assert (first.applied, first.rejected, first.skipped, first.position) == (31, 0, 0, 31)
    before = state(db_url)
    patients = patients_by_nin(before)
    assert set(patients) == set(people)
    assert {street(p) for p in patients.values()} == {"Feedgata 3"}
    assert any(t == "RelatedPerson" for t, *_ in before)

    second = run_sync(db_url, FileFeed(path), batch=7)
    assert (second.applied, second.rejected, second.position) == (0, 0, 31)
    assert state(db_url) == before
    assert position(db_url) == 31 and rejections(db_url) == []


def test_bad_records_are_rejected_with_a_reason_and_the_rest_applied(
        db_url: str, tmp_path: Path) -> None:
    good = nins(4)
    bad_nin = good[3][:-1] + str((int(good[3][-1]) + 1) % 10)  # wrong check digit
    path = write_feed(tmp_path / "events.jsonl", [
        event(1, person(good[0], 1)),
        event(2, person(bad_nin, 1)),
        b'{"sequence": 3, "type": "endret", "nin": "' + good[1].encode() + b'", "record": {',
        event(4, person(good[1], 1, status="levende")),
        {"sequence": 5, "type": "endret", "nin": good[2], "record": None},
        event(6, person(good[1], 2)),
        event(7, person(good[2], 1)),
    ])
    result = run_sync(db_url, FileFeed(path))
    assert (result.applied, result.rejected, result.position) == (3, 4, 7)
    found = rejections(db_url)
    assert [seq for seq, _ in found] == [2, None, 4, 5]
    reasons = dict(found)
    assert "check digit" in reasons[2].lower()
    assert reasons[None] == "line 3: not valid JSON"
    assert "status" in reasons[4]
    assert reasons[5] == "malformed event: 'record' must be a JSON object"
    assert not any(nin in reason for _, reason in found for nin in [*good, bad_nin])
    patients = patients_by_nin(state(db_url))
    assert set(patients) == set(good[:3])
    assert street(patients[good[1]]) == "Feedgata 2"

    # A second run repeats no rejection, not even of the line that has no sequence.
    again = run_sync(db_url, FileFeed(path))
    assert (again.applied, again.rejected, again.position) == (0, 0, 7)
    assert rejections(db_url) == found


def test_synthetic_ids_are_rejected_where_they_are_not_allowed(db_url: str, tmp_path: Path) -> None:
    path = write_feed(tmp_path / "events.jsonl", feed_events(nins(2), 1))
    result = run_sync(db_url, FileFeed(path), allow=False)
    assert (result.applied, result.rejected, result.position) == (0, 2, 2)
    assert all("synthetic" in reason for _, reason in rejections(db_url))
    assert patients_by_nin(state(db_url)) == {}


def test_out_of_order_and_repeated_events_are_applied_once_in_sequence_order(
        db_url: str, tmp_path: Path) -> None:
    people = nins(6)
    events = feed_events(people, 3)
    shuffled = events + random.Random(3).sample(events, 8)  # eight redeliveries
    random.Random(4).shuffle(shuffled)
    result = run_sync(db_url, FileFeed(write_feed(tmp_path / "shuffled.jsonl", shuffled)), batch=5)
    assert (result.applied, result.position) == (18, 18)
    # A repeat right after a batch boundary is never served (the next batch starts above it).
    assert 0 < result.skipped <= 8
    messy = state(db_url)

    with fresh_database("sqlite", tmp_path, "clean") as clean_url:
        upgrade(clean_url)
        run_sync(clean_url, FileFeed(write_feed(tmp_path / "ordered.jsonl", events)))
        clean = state(clean_url)
    assert patients_by_nin(messy) == patients_by_nin(clean)
    assert {street(p) for p in patients_by_nin(messy).values()} == {"Feedgata 3"}
    assert len(messy) == len(clean)  # no event was applied twice


def test_stop_after_then_resume_equals_one_run(db_url: str, tmp_path: Path) -> None:
    path = write_feed(tmp_path / "events.jsonl", feed_events(nins(5), 3, shuffle=9))
    part = run_sync(db_url, FileFeed(path), stop_after=7, batch=4)
    assert (part.applied, part.position) == (7, 7)
    rest = run_sync(db_url, FileFeed(path), batch=4)
    assert (rest.applied, rest.position) == (8, 15)
    with fresh_database("sqlite", tmp_path, "once") as once_url:
        upgrade(once_url)
        run_sync(once_url, FileFeed(path))
        once = state(once_url)
    assert patients_by_nin(state(db_url)) == patients_by_nin(once)


def test_a_record_that_fails_midway_leaves_nothing_behind(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    people = nins(3)
    real_apply = sync_module.apply_record

    async def apply_then_fail(s: Any, register: str, record: dict, **kw: Any) -> None:
        await real_apply(s, register, record, **kw)  # the writes happen …
        if record["nin"] == people[1]:
            # … and must be rolled back; the reason's national id must not be stored.
            raise RecordError(f"refused after writing {record['nin']}")

    monkeypatch.setattr(sync_module, "apply_record", apply_then_fail)
    result = run_sync(db_url, FileFeed(write_feed(tmp_path / "e.jsonl", feed_events(people, 1))))
    assert (result.applied, result.rejected, result.position) == (2, 1, 3)
    assert set(patients_by_nin(state(db_url))) == {people[0], people[2]}
    assert rejections(db_url) == [(2, "refused after writing <person number>")]


def test_an_unexpected_error_stops_the_consumer_at_the_last_applied_event(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    people = nins(3)
    path = write_feed(tmp_path / "e.jsonl", feed_events(people, 1))
    real_apply = sync_module.apply_record

    async def database_trouble(s: Any, register: str, record: dict, **kw: Any) -> None:
        await real_apply(s, register, record, **kw)
        if record["nin"] == people[1]:
            raise ConnectionError("the database went away")  # not the record's fault

    monkeypatch.setattr(sync_module, "apply_record", database_trouble)
    with pytest.raises(ConnectionError):
        run_sync(db_url, FileFeed(path))
    assert position(db_url) == 1 and rejections(db_url) == []
    monkeypatch.setattr(sync_module, "apply_record", real_apply)
    result = run_sync(db_url, FileFeed(path))
    assert (result.applied, result.position) == (2, 3)
    assert set(patients_by_nin(state(db_url))) == set(people)


def test_two_consumers_at_once_apply_each_event_once(db_url: str, tmp_path: Path) -> None:
    path = write_feed(tmp_path / "events.jsonl", feed_events(nins(10), 4, shuffle=2))
    results: list[SyncResult] = []
    errors: list[BaseException] = []

    def consumer() -> None:
        try:
            results.append(run_sync(db_url, FileFeed(path), batch=3))
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=consumer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert sum(r.applied for r in results) == 40
    assert [r.position for r in results] == [40, 40]
    with fresh_database("sqlite", tmp_path, "single") as single_url:
        upgrade(single_url)
        run_sync(single_url, FileFeed(path))
        single = state(single_url)
    together = state(db_url)
    assert len(together) == len(single)
    assert patients_by_nin(together) == patients_by_nin(single)


def test_http_feed_against_the_fake_persontjenesten(db_url: str, tmp_path: Path) -> None:
    people = nins(8)
    events: list[Any] = feed_events(people, 3, shuffle=5)
    events[4]["record"]["nin"] = "12345678901"  # rejected: differs from the event's nin
    events.append(events[10])  # a redelivery
    with FakePersontjenesten(events, token="s3cret") as fake:
        async def go(limit: int | None) -> SyncResult:
            async with open_store(db_url) as store, HttpFeed(fake.url, token="s3cret") as feed:
                await feed.latest()
                return await sync(store, feed, allow_synthetic_ids=True, batch=5,
                                  stop_after=limit)

        fake.fail_next = [503]  # the feed is down: nothing is consumed
        with pytest.raises(FeedError, match="HTTP 503"):
            asyncio.run(go(None))
        assert position(db_url) == 0
        first = asyncio.run(go(9))
        assert (first.applied, first.rejected, first.position) == (8, 1, 9)
        rest = asyncio.run(go(None))
        assert (rest.applied, rest.rejected, rest.position) == (15, 0, 24)
        assert all(q["pageSize"] == "5" for q in fake.requests)
        assert fake.requests[-1]["fromSequenceNumber"] == "25"

    assert rejections(db_url) == [(5, "malformed event: 'nin' differs from the record's 'nin'")]
    over_http = state(db_url)
    with fresh_database("sqlite", tmp_path, "file") as file_url:
        upgrade(file_url)
        run_sync(file_url, FileFeed(write_feed(tmp_path / "e.jsonl", events)))
        assert patients_by_nin(over_http) == patients_by_nin(state(file_url))
    assert {street(p) for p in patients_by_nin(over_http).values()} == {"Feedgata 3"}


def test_the_cli_syncs_from_the_http_feed_with_a_token_from_the_environment(
        db_url: str) -> None:
    from click.testing import CliRunner

    from akson.registry_sync_cli import sync as sync_cmd

    events: list[Any] = feed_events(nins(4), 2)
    events[2]["record"]["status"] = "zombie"
    env = {"AKSON_DATABASE_URL": db_url, "AKSON_PERSONTJENESTEN_TOKEN": "s3cret"}
    with FakePersontjenesten(events, token="s3cret") as fake:
        args = ["--url", fake.url, "--once", "--no-progress", "--batch", "3"]
        first = CliRunner().invoke(sync_cmd, args, env=env)
        again = CliRunner().invoke(sync_cmd, args, env=env)
        fake.fail_next = [502]
        down = CliRunner().invoke(sync_cmd, args, env=env)
    assert first.exit_code == 0, first.output
    rejected, summary = first.output.splitlines()
    assert rejected.startswith("  rejected (sequence 3): ") and "status" in rejected
    assert summary == "Applied 7, rejected 1, skipped 0; position 8."
    assert again.output.strip() == "Applied 0, rejected 0, skipped 0; position 8."
    assert down.exit_code == 2 and "HTTP 502" in down.output and "s3cret" not in down.output
    assert len(patients_by_nin(state(db_url))) == 4
