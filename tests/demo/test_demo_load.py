"""Loading the demo into SQLite and PostgreSQL, finding persons by national id, `--if-empty`."""

from __future__ import annotations

import asyncio

from click.testing import CliRunner

from akson.cli import main
from akson.config import Settings
from akson.demo import run_demo
from akson.fhir.naming import FNR_SYSTEM, HPR_SYSTEM
from akson.fhir.search import parse
from akson.fhir.searchparams import SearchParamRegistry
from akson.store.database import connect
from akson.store.repository import ResourceStore


async def _search(url: str, res_type: str, params: list[tuple[str, str]]) -> list[dict]:
    import orjson

    registry = SearchParamRegistry.default()
    db = connect(url, pool_size=1)
    await db.open()
    try:
        async with ResourceStore(db, registry).session(write=False) as s:
            page = await s.search(parse(res_type, params, registry=registry))
            return [orjson.loads(item.content) for item in page.items]
    finally:
        await db.close()


async def _count(url: str) -> int:
    db = connect(url, pool_size=1)
    await db.open()
    try:
        async with db.transaction(write=False) as tx:
            row = await tx.fetchone("SELECT COUNT(*) FROM resource")
            return int(row[0]) if row else 0
    finally:
        await db.close()


def test_load_and_find_persons_by_national_id(empty_db: str):
    result = run_demo(Settings(database_url=empty_db), municipalities=2, persons=120, seed=5,
                      progress=False, chunk=40)
    assert result is not None
    stats, users = result
    assert stats.persons == 120
    assert asyncio.run(_count(empty_db)) == stats.resources
    assert stats.by_type["Patient"] == 120 and stats.resources > 120 * 5

    parent = next(u for u in users if u.role == "Forelder")
    found = asyncio.run(_search(empty_db, "Patient",
                                [("identifier", f"{FNR_SYSTEM}|{parent.id_value}")]))
    assert [p["name"][0]["text"] for p in found] == [parent.name]
    patient_id = found[0]["id"]
    children = asyncio.run(_search(empty_db, "RelatedPerson", [("patient", patient_id)]))
    assert sum(1 for r in children if r.get("extension")) == 3  # parental responsibility x3

    gp = next(u for u in users if u.role == "Fastlege")
    practitioners = asyncio.run(_search(empty_db, "Practitioner",
                                        [("identifier", f"{HPR_SYSTEM}|{gp.id_value}")]))
    assert len(practitioners) == 1
    lists = asyncio.run(_search(empty_db, "EpisodeOfCare",
                                [("care-manager", f"Practitioner/{practitioners[0]['id']}"),
                                 ("status", "active"), ("_count", "1000")]))
    assert len(lists) > 10

    citizen = next(u for u in users if u.role == "Innbygger")
    found = asyncio.run(_search(empty_db, "Patient",
                                [("identifier", f"{FNR_SYSTEM}|{citizen.id_value}")]))
    conditions = asyncio.run(_search(empty_db, "Condition", [("patient", found[0]["id"])]))
    assert {c["code"]["coding"][0]["code"] for c in conditions} >= {"T90", "K86"}


def test_cli_demo_and_if_empty(empty_db: str, monkeypatch):
    monkeypatch.setenv("AKSON_DATABASE_URL", empty_db)
    runner = CliRunner()
    first = runner.invoke(main, ["demo", "--municipalities", "1", "--persons", "40", "--seed",
                                 "9", "--no-progress", "--if-empty"])
    assert first.exit_code == 0, first.output
    assert "Loaded 40 persons" in first.output
    assert "Forelder" in first.output and "Legevaktlege" in first.output
    count = asyncio.run(_count(empty_db))
    again = runner.invoke(main, ["demo", "--municipalities", "1", "--persons", "40", "--seed",
                                 "9", "--no-progress", "--if-empty"])
    assert again.exit_code == 0, again.output
    assert "already holds data" in again.output
    assert asyncio.run(_count(empty_db)) == count


def test_background_generation_loads_the_same_demo(tmp_path):
    """Generating in a child process (used for big demos) writes exactly what in-process does."""
    counts = []
    for background in (False, True):
        url = f"sqlite:///{tmp_path / f'bg-{background}.db'}"
        result = run_demo(Settings(database_url=url), municipalities=1, persons=50, seed=11,
                          progress=False, chunk=20, background=background)
        assert result is not None
        stats, users = result
        counts.append((stats.persons, stats.resources, sorted(stats.by_type.items()),
                       [(u.role, u.id_value) for u in users]))
    assert counts[0] == counts[1]
