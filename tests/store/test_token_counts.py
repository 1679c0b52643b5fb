"""Maintained code counts (akson.store.token_counts, ADR 0019) on PostgreSQL: once a key is
promoted, its count equals the live count of its index rows through every kind of write —
create, update, delete, a transaction, a reindex, a bulk import — and a fold; `_total=accurate`
reads it and subtracts a label rule's resources; a large live count gets its key promoted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from akson.api.token_count_worker import TokenCountWorker
from akson.config import Settings
from akson.fhir.search import parse
from akson.fhir.searchparams import SearchParamRegistry
from akson.importer import run_import
from akson.store import reindex, token_counts
from akson.store.repository import ResourceStore
from akson.store.search_sql import Where
from tests.conftest import fresh_database, run_on_store

LOINC = "http://loinc.org"
KEY: token_counts.Key = ("Observation", "code", LOINC, "8302-2")
LABEL = ("http://terminology.hl7.org/CodeSystem/v3-ActCode", "PSY")


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    with fresh_database("postgresql", tmp_path, "akson_counts", migrate=True) as url:
        yield url


def _obs(code: str = "8302-2", label: bool = False) -> dict:
    obs: dict[str, Any] = {"resourceType": "Observation", "status": "final",
                           "code": {"coding": [{"system": LOINC, "code": code}]}}
    if label:
        obs["meta"] = {"security": [{"system": LABEL[0], "code": LABEL[1]}]}
    return obs


async def _counts(store: ResourceStore) -> tuple[int | None, int]:
    """(maintained, live) for KEY."""
    async with store.session(write=False) as s:
        kept = await s.tx.fetchone(
            "SELECT sum(n) FROM sp_token_count WHERE res_type = %s AND param = %s AND "
            "system = %s AND code = %s", KEY)
        live = await s.tx.fetchone(
            "SELECT count(*) FROM sp_token WHERE res_type = %s AND param = %s AND system = %s "
            "AND code = %s", KEY)
    assert kept is not None and live is not None
    return (None if kept[0] is None else int(kept[0])), int(live[0])


def test_a_promoted_count_follows_every_write(db_url: str, tmp_path: Path) -> None:
    async def work(store: ResourceStore) -> None:
        async with store.session(write=True) as s:
            ids = [(await s.create("Observation", _obs())).res_id for _ in range(3)]
            await s.create("Observation", _obs("other"))
        assert await _counts(store) == (None, 3)
        async with store.session(write=True) as s:
            assert await token_counts.promote(s.tx, KEY)
            assert not await token_counts.promote(s.tx, KEY)
        assert await _counts(store) == (3, 3)
        async with store.session(write=True) as s:  # one transaction, several writes
            for _ in range(4):
                await s.create("Observation", _obs())
            await s.update("Observation", ids[0], {**_obs("other"), "id": ids[0]})
            await s.delete("Observation", ids[1])
        assert await _counts(store) == (5, 5)
        async with store.session(write=True) as s:
            await s.create("Observation", _obs())
        with pytest.raises(RuntimeError):  # a write that is rolled back counts not
            async with store.session(write=True) as s:
                await s.create("Observation", _obs())
                raise RuntimeError("rolled back")
        assert await _counts(store) == (6, 6)
        async with store.session(write=True) as s:  # a reindex deletes and inserts rows
            await reindex.index_batch(s, store.registry, "Observation", after_pk=0, limit=100,
                                      codes=["code"])
        assert await _counts(store) == (6, 6)
        async with store.session(write=True) as s:
            await token_counts.fold(s.tx)
            rows = await s.tx.fetchone("SELECT count(*) FROM sp_token_count")
            assert rows is not None and rows[0] == 1
        assert await _counts(store) == (6, 6)

    run_on_store(db_url, work)
    path = tmp_path / "obs.ndjson"  # a bulk import copies its rows in
    path.write_text("".join(json.dumps(_obs()) + "\n" for _ in range(5)))
    assert run_import(Settings(database_url=db_url), [str(path)], progress=False).loaded == 5
    assert run_on_store(db_url, _counts) == (11, 11)


def test_total_accurate_reads_the_maintained_count_less_labelled_resources(
        db_url: str) -> None:
    registry = SearchParamRegistry.default()
    query = parse("Observation", [("code", f"{LOINC}|8302-2"), ("_total", "accurate"),
                                  ("_count", "1")], registry=registry)

    async def total(store: ResourceStore, extra: Where | None = None) -> int | None:
        async with store.session(write=False) as s:
            return (await s.search(query, extra=extra)).total

    async def work(store: ResourceStore) -> None:
        async with store.session(write=True) as s:
            for i in range(6):
                await s.create("Observation", _obs(label=i < 2))
            assert await token_counts.promote(s.tx, KEY)
            # From the maintained rows alone: a row added by hand shows in the total.
            await s.tx.execute("INSERT INTO sp_token_count VALUES (%s, %s, %s, %s, 100)", KEY)
        assert await total(store) == 106
        unlabelled = Where()
        labelled = ("SELECT res_pk FROM sp_token WHERE res_type = %s AND param = '_security' "
                    "AND system = %s AND code = %s")
        unlabelled.add(f"r.pk NOT IN ({labelled})", "Observation", *LABEL)
        unlabelled.excluded.append((labelled, ["Observation", *LABEL]))
        assert await total(store, unlabelled) == 104
        other = Where()  # a predicate that is not an exclusion: counted live
        other.add("r.pk > %s", 0)
        assert await total(store, other) == 6

    run_on_store(db_url, work)


def test_a_large_live_count_gets_its_key_promoted(db_url: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(token_counts, "PROMOTE_AT", 3)
    monkeypatch.setattr(token_counts, "wanted", set())
    registry = SearchParamRegistry.default()

    async def work(store: ResourceStore) -> None:
        async with store.session(write=True) as s:
            for _ in range(3):
                await s.create("Observation", _obs())
        query = parse("Observation", [("code", f"{LOINC}|8302-2"), ("_total", "accurate")],
                      registry=registry)
        async with store.session(write=False) as s:
            assert (await s.search(query)).total == 3
        assert token_counts.wanted == {KEY}
        worker = TokenCountWorker(store)
        assert await worker.run_once()  # promotes
        assert not token_counts.wanted
        assert await _counts(store) == (3, 3)
        async with store.session(write=False) as s:
            assert (await s.search(query)).total == 3

    run_on_store(db_url, work)


def test_the_operator_promotes_the_common_codes_at_once(db_url: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`akson db counts` after a bulk load: every code with enough rows, once; SQLite has
    nothing to maintain."""
    from click.testing import CliRunner

    from akson.cli import main

    async def write(store: ResourceStore) -> None:
        async with store.session(write=True) as s:
            for code in ("8302-2", "8302-2", "8302-2", "rare"):
                await s.create("Observation", _obs(code))

    run_on_store(db_url, write)
    monkeypatch.setenv("AKSON_DATABASE_URL", db_url)
    result = CliRunner().invoke(main, ["db", "counts", "--at-least", "2"])
    assert result.exit_code == 0, result.output
    assert "for 2 more codes" in result.output  # `code` and `combo-code` both index 8302-2
    assert run_on_store(db_url, _counts) == (3, 3)
    assert "for 0 more codes" in CliRunner().invoke(main, ["db", "counts", "--at-least", "2"]).output
    monkeypatch.setenv("AKSON_DATABASE_URL", f"sqlite:///{tmp_path / 'lite.db'}")
    result = CliRunner().invoke(main, ["db", "counts"])
    assert result.exit_code == 0 and "SQLite" in result.output, result.output
