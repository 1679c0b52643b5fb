"""A first bulk load (akson.store.first_load, ADR 0023) on PostgreSQL: an import into an empty
store builds its lookup indexes and chain rows after the copy and leaves the schema exactly as
the migrations made it; an import into a store in use changes no index; a load killed part way
is finished by the next migration step."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from akson.config import Settings
from akson.fhir.search import parse
from akson.importer import run_import
from akson.store import first_load
from akson.store.database import pg_conninfo
from akson.store.migrate import upgrade
from akson.store.repository import ResourceStore
from tests.conftest import fresh_database, run_on_store
from tests.store.test_chain_rows import _migration

_SCHEMA = ("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
           "UNION ALL SELECT tgname, tgenabled::text FROM pg_trigger WHERE NOT tgisinternal "
           "ORDER BY 1")


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with fresh_database("postgresql", tmp_path, "akson_first", migrate=True) as url:
        yield url


def _sql(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(pg_conninfo(url), autocommit=True) as conn:
        return conn.execute(sql).fetchall()


def _people(folder: Path, n: int) -> Path:
    """Observations first, then their Patients (as Synthea's files sort), so each chain row
    joins a referrer loaded before its target."""
    folder.mkdir(exist_ok=True)
    obs = [{"resourceType": "Observation", "id": f"o{i}", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/p{i % 7}"}} for i in range(n)]
    pats = [{"resourceType": "Patient", "id": f"p{i}", "name": [{"family": f"Hansen{i}"}]}
            for i in range(7)]
    for name, rows in (("a-Observation.ndjson", obs), ("b-Patient.ndjson", pats)):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def _chain_rows_as_implied(url: str) -> None:
    rows = _sql(url, "SELECT chain, value_norm, res_pk, target_pk FROM sp_chain ORDER BY 1, 2, 3, 4")
    assert rows and rows == _sql(url, f"{_migration().IMPLIED} ORDER BY 1, 2, 3, 4")


def _search(url: str, name: str) -> list[str]:
    """The Observations whose subject is a Patient named `name`, through the chain rows."""
    async def go(store: ResourceStore) -> list[str]:
        async with store.session(write=False) as s:
            page = await s.search(parse("Observation", [("subject:Patient.name", name),
                                                        ("_count", "1000")],
                                        registry=store.registry))
            return sorted(item.res_id for item in page.items)
    return run_on_store(url, go)


def test_a_first_load_ends_with_the_schema_the_migrations_made(url: str, tmp_path: Path) -> None:
    before = _sql(url, _SCHEMA)
    summary = run_import(Settings(database_url=url), [str(_people(tmp_path / "in", 40))],
                         progress=False, chunk=10)
    assert (summary.loaded, summary.rejected) == (47, [])
    assert _sql(url, _SCHEMA) == before
    assert first_load.pending(url) == 0
    _chain_rows_as_implied(url)
    assert _search(url, "hansen3") == sorted(f"o{i}" for i in range(40) if i % 7 == 3)
    # Written after the load, a referrer gets its chain rows from the triggers again.
    again = tmp_path / "again.ndjson"
    again.write_text(json.dumps({"resourceType": "Observation", "id": "late", "status": "final",
                                 "code": {"text": "x"}, "subject": {"reference": "Patient/p3"}}))
    run_import(Settings(database_url=url), [str(again)], progress=False)
    assert "late" in _search(url, "hansen3")
    _chain_rows_as_implied(url)


def test_a_store_in_use_keeps_its_indexes(url: str, tmp_path: Path) -> None:
    run_import(Settings(database_url=url), [str(_people(tmp_path / "in", 3))], progress=False)
    schema = _sql(url, _SCHEMA)
    assert first_load.begin(url) is False
    assert _sql(url, _SCHEMA) == schema and first_load.pending(url) == 0


def test_a_load_killed_part_way_is_finished_by_the_next_upgrade(url: str, tmp_path: Path) -> None:
    before = _sql(url, _SCHEMA)
    assert first_load.begin(url) is True
    put_off = first_load.pending(url)
    assert put_off > 20
    names = {name for name, _ in _sql(url, _SCHEMA)}
    assert "ix_sp_token_lookup" not in names and "ix_sp_token_res" in names  # kept: led by res_pk
    assert "uq_resource_type_id" in names
    # Resources written while they are off (what a killed import leaves), then the next
    # migration step, as a server start or the next import runs it.

    async def write(store: ResourceStore) -> None:
        async with store.session(write=True) as s:
            await s.update("Patient", "p1", {"resourceType": "Patient", "name": [{"family": "Berg"}]})
            for _ in range(3):
                await s.create("Observation", {"resourceType": "Observation", "status": "final",
                                               "code": {"text": "puls"},
                                               "subject": {"reference": "Patient/p1"}})
    run_on_store(url, write)
    assert first_load.pending(url) == put_off and not _sql(url, "SELECT 1 FROM sp_chain")
    upgrade(url)
    assert _sql(url, _SCHEMA) == before and first_load.pending(url) == 0
    _chain_rows_as_implied(url)
