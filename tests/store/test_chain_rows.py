"""Chain rows (akson.store.chain_rows, ADR 0020) on PostgreSQL: `sp_chain` holds exactly the
rows `sp_reference` and `sp_string` imply through every kind of write — a referrer before or
after its target, a name changed or kept, a subject moved, a target deleted, a transaction and
its rollback, a reindex, a bulk import — and a chained search read from them pages, honours
the target's policy and falls back when a prefix matches too many values."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from akson.config import Settings
from akson.fhir.search import SearchQuery, parse
from akson.fhir.searchparams import SearchParamRegistry
from akson.importer import run_import
from akson.store import chain_rows, reindex
from akson.store.repository import ResourceStore, Session
from akson.store.search_sql import Where, chain_rows_lead
from tests.conftest import fresh_database, run_on_store

NAME = "Observation.subject:Patient.name"
LABEL = ("http://terminology.hl7.org/CodeSystem/v3-ActCode", "PSY")
_MIGRATION = (Path(__file__).parents[2] / "src" / "akson" / "store" / "migrations" / "versions"
              / "0024_chain_rows.py")


def _migration() -> Any:
    spec = importlib.util.spec_from_file_location("migration_0024", _MIGRATION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    with fresh_database("postgresql", tmp_path, "akson_chains", migrate=True) as url:
        yield url


def _patient(pid: str, family: str, given: str = "Kari", label: bool = False) -> dict:
    patient: dict[str, Any] = {"resourceType": "Patient", "id": pid,
                               "name": [{"family": family, "given": [given]}]}
    if label:
        patient["meta"] = {"security": [{"system": LABEL[0], "code": LABEL[1]}]}
    return patient


def _obs(subject: str) -> dict:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
            "subject": {"reference": subject}}


async def _kept(store: ResourceStore) -> list[tuple[Any, ...]]:
    """The chain rows held, after checking they are exactly those the index tables imply."""
    async with store.session(write=False) as s:
        held = await s.tx.fetchall("SELECT chain, value_norm, res_pk, target_pk FROM sp_chain "
                                   "ORDER BY 1, 2, 3, 4")
        implied = await s.tx.fetchall(f"{_migration().IMPLIED} ORDER BY 1, 2, 3, 4")
    assert [tuple(r) for r in held] == [tuple(r) for r in implied]
    return [tuple(r) for r in held]


async def _values(store: ResourceStore, obs_id: str) -> set[str]:
    async with store.session(write=False) as s:
        rows = await s.tx.fetchall(
            "SELECT c.value_norm FROM sp_chain c JOIN resource r ON r.pk = c.res_pk "
            "WHERE r.res_type = 'Observation' AND r.res_id = %s", (obs_id,))
    return {r[0] for r in rows}


def test_the_declared_chains_are_the_migrations() -> None:
    assert [c.name for c in chain_rows.CHAINS] == [c[0] for c in _migration()._CHAINS]
    assert [(c.res_type, c.param, c.target_type, c.target_param) for c in chain_rows.CHAINS] \
        == [c[1:] for c in _migration()._CHAINS]


def test_chain_rows_follow_every_write(db_url: str, tmp_path: Path) -> None:
    async def work(store: ResourceStore) -> None:
        async with store.session(write=True) as s:  # a referrer before its target
            early = (await s.create("Observation", _obs("Patient/p1"))).res_id
        assert await _kept(store) == []
        async with store.session(write=True) as s:
            await s.update("Patient", "p1", _patient("p1", "Jacobsen"))
            late = (await s.create("Observation", _obs("Patient/p1"))).res_id
            await s.update("Patient", "p2", _patient("p2", "Berg", "Ola"))
        assert await _values(store, early) == await _values(store, late) == {"jacobsen", "kari"}
        assert len(await _kept(store)) == 4
        async with store.session(write=True) as s:  # a name changed, then one kept
            await s.update("Patient", "p1", _patient("p1", "Søreng"))
            await s.update("Patient", "p1", {**_patient("p1", "Søreng"), "gender": "female"})
        assert await _values(store, early) == {"soreng", "kari"}
        assert len(await _kept(store)) == 4
        async with store.session(write=True) as s:  # a subject moved, then unchanged
            await s.update("Observation", early, {**_obs("Patient/p2"), "id": early})
            await s.update("Observation", early, {**_obs("Patient/p2"), "id": early,
                                                  "status": "amended"})
        assert await _values(store, early) == {"berg", "ola"}
        async with store.session(write=True) as s:  # a target deleted, then back
            await s.delete("Patient", "p2")
        assert await _values(store, early) == set()
        async with store.session(write=True) as s:
            await s.update("Patient", "p2", _patient("p2", "Berg", "Ola"))
        assert await _values(store, early) == {"berg", "ola"}
        async with store.session(write=True) as s:  # a referrer deleted
            await s.delete("Observation", late)
        assert await _values(store, late) == set()
        before = await _kept(store)
        with pytest.raises(RuntimeError):  # a rolled-back write leaves no rows
            async with store.session(write=True) as s:
                await s.update("Patient", "p2", _patient("p2", "Haugen"))
                raise RuntimeError("rolled back")
        assert await _kept(store) == before
        async with store.session(write=True) as s:  # a reindex deletes and inserts rows
            for res_type, code in (("Patient", "name"), ("Observation", "subject")):
                await reindex.index_batch(s, store.registry, res_type, after_pk=0, limit=100,
                                          codes=[code])
            await reindex.index_batch(s, store.registry, None, after_pk=0, limit=100,
                                      codes=None)
        assert await _kept(store) == before

    run_on_store(db_url, work)
    path = tmp_path / "load.ndjson"  # a bulk import: the referrers before their target
    lines = [_obs("Patient/p3"), _obs("Patient/p3"), _patient("p3", "Haugen", "Åse")]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert run_import(Settings(database_url=db_url), [str(path)], progress=False).loaded == 3
    kept = run_on_store(db_url, _kept)
    assert sum(1 for row in kept if row[1] == "haugen") == 2


def test_chunks_written_at_once_with_crossing_chains(db_url: str, tmp_path: Path) -> None:
    """Side-by-side import chunks each holding one Patient and an Observation of the other
    chunk's Patient take the chain locks in opposite orders; a chunk that loses the deadlock is
    written again, and every row is there."""
    lines = []
    for i in range(20):
        lines += [_patient(f"x{i}", "Xu"), _obs(f"Patient/y{i}"),
                  _patient(f"y{i}", "Yang"), _obs(f"Patient/x{i}")]
    path = tmp_path / "crossing.ndjson"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    summary = run_import(Settings(database_url=db_url), [str(path)], progress=False, chunk=2)
    assert (summary.loaded, summary.rejected) == (80, [])
    kept = run_on_store(db_url, _kept)
    assert sum(1 for row in kept if row[1] == "xu") == sum(1 for row in kept if row[1] == "yang") == 20


async def _blocked(store: ResourceStore) -> None:
    """Return once some transaction waits for a chain's advisory lock (polled, bounded)."""
    for _ in range(500):
        async with store.session(write=False) as s:
            row = await s.tx.fetchone("SELECT count(*) FROM pg_locks WHERE locktype = "
                                      "'advisory' AND NOT granted")
        if row is not None and row[0]:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no transaction waited for the chain lock")


@pytest.mark.parametrize("first", ["referrer", "target"])
def test_a_referrer_and_its_target_written_at_once(db_url: str, first: str) -> None:
    """Two transactions: one adds an Observation of Patient p1, the other renames p1. Each
    writes before the other commits; whichever holds its lock first, the other waits for its
    commit and then reads its rows, so none go missing and none stay stale."""
    async def work(store: ResourceStore) -> None:
        async with store.session(write=True) as s:
            await s.update("Patient", "p1", _patient("p1", "Jacobsen"))
        written, release = asyncio.Event(), asyncio.Event()
        obs_ids: list[str] = []

        async def referrer(hold: bool) -> None:
            async with store.session(write=True) as s:
                obs_ids.append((await s.create("Observation", _obs("Patient/p1"))).res_id)
                await s.tx.fetchone("SELECT 1")  # sends the held write: its triggers run
                if hold:
                    written.set()
                    await release.wait()

        async def target(hold: bool) -> None:
            async with store.session(write=True) as s:
                await s.update("Patient", "p1", _patient("p1", "Berg", "Ola"))
                await s.tx.fetchone("SELECT 1")
                if hold:
                    written.set()
                    await release.wait()

        held, other = (referrer, target) if first == "referrer" else (target, referrer)
        holding = asyncio.create_task(held(True))
        await written.wait()
        waiting = asyncio.create_task(other(False))
        await _blocked(store)
        release.set()
        await asyncio.gather(holding, waiting)
        assert await _values(store, obs_ids[0]) == {"berg", "ola"}
        await _kept(store)

    run_on_store(db_url, work, pool_size=3)  # two writers and the one watching them


def test_removing_a_parameter_removes_its_chain_rows_without_a_lock_per_target(
        db_url: str) -> None:
    """A removed parameter's rows go in one statement (a `remove` job): its chain rows too,
    and no advisory lock is left per target (the lock table holds a few thousand)."""
    async def work(store: ResourceStore) -> None:
        async with store.session(write=True) as s:
            for i in range(30):
                await s.update("Patient", f"p{i}", _patient(f"p{i}", "Jacobsen"))
                await s.create("Observation", _obs(f"Patient/p{i}"))
        assert len(await _kept(store)) == 60
        async with store.session(write=True) as s:
            await reindex.remove_rows(s, "subject", ["Observation"])
            held = await s.tx.fetchone("SELECT count(*) FROM pg_locks WHERE locktype = "
                                       "'advisory' AND pid = pg_backend_pid()")
            assert held is not None and held[0] == 0
        assert await _kept(store) == []
        async with store.session(write=True) as s:  # and a write afterwards locks again
            await s.update("Patient", "p0", _patient("p0", "Berg"))
            held = await s.tx.fetchone("SELECT count(*) FROM pg_locks WHERE locktype = "
                                       "'advisory' AND pid = pg_backend_pid()")
            assert held is not None and held[0] > 0

    run_on_store(db_url, work)


def _query(registry: SearchParamRegistry, name: str, count: int,
           cursor: int | None = None) -> SearchQuery:
    query = parse("Observation", [("subject:Patient.name", name), ("_count", str(count))],
                  registry=registry)
    query.cursor = cursor
    return query


def _unlabelled(alias: str, res_type: str) -> Where:
    """A label rule, as the access policy writes one: pk-only."""
    where = Where()
    where.add(f"{alias}.pk NOT IN (SELECT res_pk FROM sp_token WHERE res_type = %s AND "
              "param = '_security' AND system = %s AND code = %s)", res_type, *LABEL)
    return where


def test_a_chained_search_pages_from_the_rows(db_url: str, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    registry = SearchParamRegistry.default()
    people = [("a", "Jacobsen", False), ("b", "Jacobsen", True), ("c", "Jacobsenn", False),
              ("d", "Berg", False), ("e", "Jacob", False)]

    async def pages(s: Session, name: str, count: int, scope: Any = None) -> list[str]:
        seen: list[str] = []
        cursor: int | None = None
        while True:
            page = await s.search(_query(registry, name, count, cursor), scope=scope)
            seen += [item.res_id for item in page.items]
            if page.next_cursor is None:
                return seen
            cursor = page.next_cursor

    async def work(store: ResourceStore) -> None:
        expected: dict[str, list[str]] = {}
        async with store.session(write=True) as s:
            for pid, family, label in people:
                await s.update("Patient", pid, _patient(pid, family, "Per", label))
            for i in range(21):  # interleaved, so pk order mixes the patients
                pid = people[i % len(people)][0]
                expected.setdefault(pid, []).append(
                    (await s.create("Observation", _obs(f"Patient/{pid}"))).res_id)
        jacobsen = expected["a"] + expected["b"] + expected["c"]
        async with store.session(write=False) as s:
            plan = (await s.search(parse(
                "Observation", [("subject:Patient.name", "jacobsen"), ("_explain", "true")],
                registry=registry))).plan
            assert plan is not None and "sp_chain" in plan
            every = await pages(s, "jacobsen", 2)
            assert sorted(every) == sorted(jacobsen)
            assert every == await pages(s, "jacobsen", 100)  # one order, however paged
            assert len(set(every)) == len(every)
            hidden = await pages(s, "jacobsen", 2, scope=_unlabelled)
            assert sorted(hidden) == sorted(expected["a"] + expected["c"])
            assert sorted(await pages(s, "berg", 3)) == sorted(expected["d"])
            assert await pages(s, "nobody", 3) == []
            # Backwards from the last page's first row: the rows before it, in order.
            last = await s.search(_query(registry, "jacobsen", 4, None))
            assert last.next_cursor is not None
            second = await s.search(_query(registry, "jacobsen", 4, last.next_cursor))
            assert second.prev_cursor is not None
            back = await s.search(_query(registry, "jacobsen", 4, second.prev_cursor))
            assert [i.res_id for i in back.items] == [i.res_id for i in last.items]
            # Past MAX_VALUES distinct values ("jacob", "jacobsen", "jacobsenn") the general
            # chain answers, alike.
            monkeypatch.setattr(chain_rows, "MAX_VALUES", 2)
            assert sorted(await pages(s, "jac", 2)) == sorted(
                jacobsen + expected["e"])

    run_on_store(db_url, work)


def test_a_policy_reading_more_than_the_targets_pk_takes_the_general_chain() -> None:
    registry = SearchParamRegistry.default()
    query = parse("Observation", [("subject:Patient.name", "jacobsen")], registry=registry)
    assert chain_rows_lead(query) is not None
    assert chain_rows_lead(query, scope=_unlabelled) is not None

    def by_org(alias: str, res_type: str) -> Where:
        where = Where()
        where.add(f"{alias}.org = %s", "974589095")
        return where

    assert chain_rows_lead(query, scope=by_org) is None
    for params in ([("subject:Patient.name:exact", "Jacobsen")],
                   [("subject:Patient.name", "jacobsen,berg")],
                   [("subject:Patient.family", "jacobsen")],
                   [("patient:Patient.name", "jacobsen")]):
        assert chain_rows_lead(parse("Observation", params, registry=registry)) is None
