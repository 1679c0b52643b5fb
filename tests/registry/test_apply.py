"""apply_record on both databases: changes make new versions, equal records do not, relations
follow FREG, production refuses synthetic ids, and concurrent writers create one resource."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from tests.conftest import run_on_store
from tests.registry.support import DATA
from tests.registry.synth import ORGNR, tenor

from akson.fhir.naming import FNR_SYSTEM, KOMMUNENR_SYSTEM, ORGNR_SYSTEM
from akson.registry import lookup
from akson.registry.loader import apply_record, apply_record_counted, load_municipalities
from akson.registry.records import RecordError, parse_record
from akson.registry_cli import registry
from akson.store.repository import ResourceStore

PERSON = tenor(date(2001, 1, 1), 505)
SPOUSE = tenor(date(2002, 2, 2), 606)
CHILD = tenor(date(2020, 3, 3), 507)


def person(**over: Any) -> dict[str, Any]:
    rec = {"nin": PERSON, "status": "bosatt", "name": {"given": "Endre", "family": "Endring"},
           "address": {"lines": ["Gata 2"], "postal_code": "0150", "city": "Oslo",
                       "municipality": "0301"},
           "family": [{"nin": SPOUSE, "relation": "ektefelle"}]}
    rec.update(over)
    return parse_record("freg", orjson.dumps(rec))


def apply(url: str, register: str, record: dict, *, synthetic: bool = True) -> Any:
    async def go(store: ResourceStore) -> Any:
        async with store.session(write=True) as s:
            return await apply_record_counted(s, register, record,
                                              allow_synthetic_ids=synthetic)

    return run_on_store(url, go, pool_size=4)


def read_patient(url: str, nin: str) -> tuple[Any, list[Any]]:
    async def go(store: ResourceStore) -> tuple[Any, list[Any]]:
        async with store.session(write=False) as s:
            pat = await lookup.patient_by_nin(s, nin)
            rels = [r async for r in lookup.search_all(
                s, "RelatedPerson", [("patient", f"Patient/{pat.res_id}")])] if pat else []
            return pat, rels

    return run_on_store(url, go, pool_size=4)


def test_change_makes_a_version_and_equal_record_does_not(reg_url: str) -> None:
    first = apply(reg_url, "freg", person())
    assert (first.created, first.updated) == (2, 0)  # Patient + RelatedPerson
    again = apply(reg_url, "freg", person())
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
    pat, _ = read_patient(reg_url, PERSON)
    assert pat.version == 1

    # Becomes strictly confidential: a new version without any address.
    changed = apply(reg_url, "freg", person(address_protection="strictly_confidential"))
    assert changed.updated == 1
    pat, _ = read_patient(reg_url, PERSON)
    doc = orjson.loads(pat.content)
    assert pat.version == 2 and "address" not in doc and b"Gata 2" not in pat.content
    assert apply(reg_url, "freg", person(address_protection="strictly_confidential")).updated == 0


def test_elements_the_journal_added_survive_a_register_update(reg_url: str) -> None:
    nin = tenor(date(2003, 3, 3), 707)
    apply(reg_url, "freg", person(nin=nin, family=[]))

    async def add_phone(store: ResourceStore) -> None:
        async with store.session(write=True) as s:
            pat = await lookup.patient_by_nin(s, nin)
            doc = orjson.loads(pat.content)
            doc["telecom"] = [{"system": "phone", "value": "+4799999999"}]
            await s.update("Patient", pat.res_id, doc)

    run_on_store(reg_url, add_phone, pool_size=4)
    apply(reg_url, "freg", person(nin=nin, family=[], name={"given": "Ny", "family": "Navn"}))
    pat, _ = read_patient(reg_url, nin)
    doc = orjson.loads(pat.content)
    assert doc["name"][0]["given"] == ["Ny"]
    assert doc["telecom"][0]["value"] == "+4799999999"


def test_relations_follow_the_register(reg_url: str) -> None:
    nin = tenor(date(2004, 4, 4), 808)
    apply(reg_url, "freg", person(nin=nin, parental_responsibility=[
        {"child_nin": CHILD, "responsibility": "felles"}]))
    _, rels = read_patient(reg_url, nin)
    assert len(rels) == 2
    # The marriage ends: its RelatedPerson is deleted, the child stays as it was.
    counts = apply(reg_url, "freg", person(nin=nin, family=[], parental_responsibility=[
        {"child_nin": CHILD, "responsibility": "felles"}]))
    assert (counts.deleted, counts.unchanged) == (1, 2)
    _, rels = read_patient(reg_url, nin)
    assert [orjson.loads(r.content)["identifier"][0]["value"] for r in rels] == [CHILD]
    assert rels[0].version == 1


def test_production_refuses_synthetic_ids_and_writes_nothing(reg_url: str) -> None:
    nin = tenor(date(2005, 5, 5), 909)
    with pytest.raises(RecordError) as err:
        apply(reg_url, "freg", person(nin=nin), synthetic=False)
    assert "synthetic" in err.value.reason and nin not in err.value.reason
    assert read_patient(reg_url, nin)[0] is None


def test_unknown_references_are_record_errors(reg_url: str) -> None:
    rec = parse_record("flr", orjson.dumps({
        "kind": "contract", "contract_id": "X1", "hpr_number": "7777777", "orgnr": ORGNR[5],
        "municipality": "0301", "from": "2020-01-01"}))
    with pytest.raises(RecordError, match="hpr_number is not a known practitioner"):
        apply(reg_url, "flr", rec)


def test_concurrent_writers_create_one_patient(reg_url: str) -> None:
    nin = tenor(date(2006, 6, 6), 510)
    rec = person(nin=nin, family=[])

    async def go(store: ResourceStore) -> list[str]:
        async def one() -> None:
            async with store.session(write=True) as s:
                await apply_record(s, "freg", rec, allow_synthetic_ids=True)

        await asyncio.gather(*(one() for _ in range(4)))
        async with store.session(write=False) as s:
            return [p.res_id async for p in lookup.search_all(
                s, "Patient", [("identifier", f"{FNR_SYSTEM}|{nin}")])]

    assert len(run_on_store(reg_url, go, pool_size=4)) == 1


def test_municipalities_load_once_and_meet_enhet(reg_url: str) -> None:
    async def load(store: ResourceStore) -> Any:
        async with store.session(write=True) as s:
            return await load_municipalities(s)

    first = run_on_store(reg_url, load, pool_size=4)
    assert first.created == 357
    assert run_on_store(reg_url, load, pool_size=4).created == 0
    # Enhetsregisteret's Oslo kommune becomes the municipality-list resource, not a second one.
    apply(reg_url, "enhet", parse_record("enhet", orjson.dumps({
        "orgnr": ORGNR[4], "name": "Oslo kommune", "kind": "kommune", "municipality": "0301"})))

    async def oslo(store: ResourceStore) -> list[Any]:
        async with store.session(write=False) as s:
            return [o async for o in lookup.search_all(
                s, "Organization", [("identifier", f"{KOMMUNENR_SYSTEM}|0301")])]

    found = run_on_store(reg_url, oslo, pool_size=4)
    assert [o.res_id for o in found] == ["kommune-0301"]
    doc = orjson.loads(found[0].content)
    assert {"system": ORGNR_SYSTEM, "value": ORGNR[4]} in doc["identifier"]
    assert doc["alias"] == ["Oslove"]  # kept from the municipality list


def test_cli_import_reports_and_exits_1_on_rejections(reg_url: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AKSON_DATABASE_URL", reg_url)
    runner = CliRunner()
    result = runner.invoke(registry, ["import", "--register", "hpr", "--no-progress",
                                      str(DATA / "hpr.jsonl")])
    assert result.exit_code == 1, result.output
    assert "hpr: 3 records, 2 applied, 1 rejected" in result.output
    assert "line 3: hpr_number is not an HPR number" in result.output
    ok = DATA.parent / "data" / "enhet.jsonl"
    result = runner.invoke(registry, ["import", "--register", "nope", str(ok)])
    assert result.exit_code == 2
