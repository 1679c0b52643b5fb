"""Importing the register fixture files (tests/registry/data) on SQLite and PostgreSQL.

The files hold valid records and deliberately bad ones; the bad ones are rejected with their
line and reason, the others load, and importing again changes nothing.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson
import pytest
from tests.conftest import run_on_store
from tests.registry.support import DATA

from akson.config import Settings
from akson.fhir.naming import HER_ID_SYSTEM, KOMMUNENR_SYSTEM, ORGNR_SYSTEM
from akson.registry import lookup
from akson.registry.loader import ImportSummary, import_file
from akson.registry.mapping import ADDRESS_PROTECTION_SYSTEM, SOURCE_TAG_SYSTEM
from akson.store.repository import ResourceStore

ORDER = ("enhet", "hpr", "freg", "flr", "ar")
TYPES = ("Patient", "RelatedPerson", "Practitioner", "PractitionerRole", "Organization",
         "HealthcareService", "Endpoint", "EpisodeOfCare")
KARI, MOR, BARN = "01918012385", "04835523433", "07861556705"
SKJULT, FORTROLIG, DNR = "03829011106", "05848522300", "42817034610"
GP1_HPR, GP2_HPR = "9144900", "9144901"
KOMMUNE, LEGESENTER, HJEMME, LEGEVAKT = "926018159", "883016610", "818609132", "899603087"
SETTINGS = Settings()

#: Every rejection the fixture files must produce: (line, reason).
EXPECTED_REJECTIONS = {
    "enhet": [(5, "orgnr is not an organisation number (9 digits, valid check digit)"),
              (7, "municipality 9999 is not a Norwegian municipality number")],
    "hpr": [(3, "hpr_number is not an HPR number (1-9 digits, no leading zero)")],
    "freg": [(7, "nin has an invalid check digit"),
             (8, "address.municipality 9999 is not a Norwegian municipality number"),
             (9, "the line is not valid JSON (invalid literal, expected 'null' at char 0)")],
    "flr": [(8, "contract_id is not a known GP contract"),
            (9, "nin is not a known person"),
            (10, "to is before from")],
    "ar": [(5, "her_id is not a HER-id (1-9 digits, no leading zero)"),
           (6, "parent_her_id is not a known communication party")],
}


async def _import_all(store: ResourceStore) -> dict[str, ImportSummary]:
    return {reg: await import_file(store, reg, DATA / f"{reg}.jsonl", settings=SETTINGS,
                                   progress=False) for reg in ORDER}


async def _snapshot(store: ResourceStore) -> dict[tuple[str, str], tuple[int, dict[str, Any]]]:
    out = {}
    async with store.session(write=False) as s:
        for res_type in TYPES:
            async for item in lookup.search_all(s, res_type, []):
                out[(res_type, item.res_id)] = (item.version, orjson.loads(item.content or b""))
    return out


@pytest.fixture(scope="module")
def loaded(reg_url: str) -> tuple[str, dict[str, ImportSummary], dict]:
    async def go(store: ResourceStore) -> tuple[dict[str, ImportSummary], dict]:
        summaries = await _import_all(store)
        return summaries, await _snapshot(store)

    summaries, snapshot = run_on_store(reg_url, go, pool_size=4)
    return reg_url, summaries, snapshot


def of_type(snapshot: dict, res_type: str) -> list[dict[str, Any]]:
    return [doc for (t, _), (_, doc) in snapshot.items() if t == res_type]


def ident(doc: dict, system: str) -> str | None:
    return next((i["value"] for i in doc.get("identifier", []) if i["system"] == system), None)


@pytest.mark.parametrize("register", ORDER)
def test_bad_lines_are_rejected_with_reasons_and_the_rest_load(loaded: tuple, register: str
                                                               ) -> None:
    _, summaries, _ = loaded
    summary = summaries[register]
    assert summary.rejected == EXPECTED_REJECTIONS[register]
    assert summary.applied == summary.records - len(summary.rejected)
    for _, reason in summary.rejected:
        for nin in (KARI, MOR, BARN, "01918012386", "09899910173"):
            assert nin not in reason


def test_expected_resources(loaded: tuple) -> None:
    _, _, snap = loaded
    counts = {t: len(of_type(snap, t)) for t in TYPES}
    assert counts == {"Patient": 6, "RelatedPerson": 4, "Practitioner": 2,
                      "PractitionerRole": 3, "Organization": 4, "HealthcareService": 1,
                      "Endpoint": 4, "EpisodeOfCare": 5}
    for doc in (d for t in TYPES for d in of_type(snap, t)):
        sources = [t["code"] for t in doc["meta"]["tag"] if t["system"] == SOURCE_TAG_SYSTEM]
        assert sources, doc["resourceType"]


def test_organizations_merge_registers_and_resolve_parents(loaded: tuple) -> None:
    _, _, snap = loaded
    orgs = {ident(o, ORGNR_SYSTEM): o for o in of_type(snap, "Organization")}
    kommune = orgs[KOMMUNE]
    assert ident(kommune, HER_ID_SYSTEM) == "8001"
    assert ident(kommune, KOMMUNENR_SYSTEM) == "4601"
    assert kommune["name"] == "Bergen kommune"
    assert [t["code"] for t in kommune["meta"]["tag"]] == ["enhet", "ar"]
    assert len(kommune["endpoint"]) == 1
    assert orgs[LEGESENTER]["name"] == "Fjellsiden legesenter"  # AR does not rename it
    assert orgs[LEGESENTER]["partOf"] == {"reference": f"Organization/{kommune['id']}"}
    # The legevakt came before its parent in the file: it was retried after the file.
    assert orgs[LEGEVAKT]["partOf"] == {"reference": f"Organization/{orgs[HJEMME]['id']}"}


def test_reimport_changes_nothing(loaded: tuple) -> None:
    url, _, before = loaded

    async def go(store: ResourceStore) -> tuple[dict[str, ImportSummary], dict]:
        return await _import_all(store), await _snapshot(store)

    summaries, after = run_on_store(url, go, pool_size=4)
    assert after == before  # same ids, same versions, same content
    for register, summary in summaries.items():
        assert summary.counts.created == summary.counts.updated == 0, register
        assert summary.counts.deleted == 0
        assert summary.rejected == EXPECTED_REJECTIONS[register]


def test_strictly_confidential_address_is_nowhere(loaded: tuple) -> None:
    _, _, snap = loaded
    blob = orjson.dumps([doc for _, doc in snap.values()]).decode()
    # The postcode as a JSON string value: a bare "5009" can occur inside a random uuid.
    assert "Hemmeligveien" not in blob and '"5009"' not in blob
    patients = {ident(p, "urn:oid:2.16.578.1.12.4.1.4.1"): p for p in of_type(snap, "Patient")}
    hidden = patients[SKJULT]
    assert "address" not in hidden
    assert hidden["meta"]["security"][0]["system"] == ADDRESS_PROTECTION_SYSTEM
    assert hidden["meta"]["security"][0]["code"] == "strictly-confidential"
    shown = patients[FORTROLIG]
    assert shown["address"][0]["line"] == ["Lukketveien 7"]
    assert shown["meta"]["security"][0]["code"] == "confidential"
    assert "security" not in patients[KARI]["meta"]


def run(url: str, fn: Any) -> Any:
    async def go(store: ResourceStore) -> Any:
        async with store.session(write=False) as s:
            return await fn(s)

    return run_on_store(url, go, pool_size=4)


def test_lookups_by_natural_key(loaded: tuple) -> None:
    url, _, _ = loaded

    async def go(s: Any) -> dict[str, Any]:
        return {
            "kari": await lookup.patient_by_nin(s, KARI),
            "dnr": await lookup.patient_by_nin(s, DNR),
            "nobody": await lookup.patient_by_nin(s, "09899910173"),
            "junk": await lookup.patient_by_nin(s, "123"),
            "gp1": await lookup.practitioner_by_hpr(s, GP1_HPR),
            "kommune": await lookup.organization_by_orgnr(s, KOMMUNE),
            "svc": await lookup.by_her_id(s, "8002"),
            "role": await lookup.by_her_id(s, "8003"),
            "org": await lookup.by_her_id(s, "8001"),
            "none": await lookup.by_her_id(s, "8999"),
        }

    got = run(url, go)
    kari = orjson.loads(got["kari"].content)
    assert kari["name"][0]["given"] == ["Kari"]
    assert orjson.loads(got["dnr"].content)["name"][0]["family"] == "Dnummer"
    assert got["nobody"] is None and got["junk"] is None and got["none"] is None
    assert orjson.loads(got["gp1"].content)["name"][0]["family"] == "Lege"
    assert got["org"].res_id == got["kommune"].res_id
    assert got["svc"].res_type == "HealthcareService"
    role = orjson.loads(got["role"].content)
    assert got["role"].res_type == "PractitionerRole"
    assert role["practitioner"]["reference"] == f"Practitioner/{got['gp1'].res_id}"
    assert role["organization"]["reference"] == f"Organization/{got['kommune'].res_id}"


def _ids(url: str) -> dict[str, str]:
    async def go(s: Any) -> dict[str, str]:
        out = {}
        for name, nin in (("kari", KARI), ("mor", MOR), ("barn", BARN)):
            out[name] = (await lookup.patient_by_nin(s, nin)).res_id
        for name, hpr in (("gp1", GP1_HPR), ("gp2", GP2_HPR)):
            out[name] = (await lookup.practitioner_by_hpr(s, hpr)).res_id
        return out

    return dict(run(url, go))


@pytest.mark.parametrize("who,when,gp", [
    ("kari", date(2019, 2, 28), None),     # before her first membership
    ("kari", date(2019, 3, 1), "gp1"),     # its first day
    ("kari", date(2021, 6, 30), "gp1"),    # its last day
    ("kari", date(2021, 7, 1), "gp2"),     # after the GP change
    ("kari", date(2035, 1, 1), "gp2"),     # open-ended
    ("barn", date(2021, 6, 30), "gp2"),
    ("barn", date(2021, 7, 1), "gp1"),     # change day (old to == new from): the new GP
    ("mor", date(2015, 1, 1), "gp1"),
])
def test_gp_at(loaded: tuple, who: str, when: date, gp: str | None) -> None:
    url = loaded[0]
    ids = _ids(url)

    async def go(s: Any) -> Any:
        return await lookup.gp_at(s, ids[who], when)

    found = run(url, go)
    if gp is None:
        assert found is None
    else:
        assert found is not None and found.res_type == "Practitioner"
        assert found.res_id == ids[gp]


@pytest.mark.parametrize("gp,when,members", [
    ("gp1", date(2014, 12, 31), []),
    ("gp1", date(2020, 1, 1), ["kari", "mor"]),
    ("gp1", date(2021, 7, 1), ["barn", "mor"]),
    ("gp2", date(2021, 6, 30), ["barn"]),
    ("gp2", date(2021, 7, 1), ["kari"]),   # barn's membership ends that day but a new one starts
])
def test_gp_list_at(loaded: tuple, gp: str, when: date, members: list[str]) -> None:
    url = loaded[0]
    ids = _ids(url)

    async def go(s: Any) -> Any:
        return await lookup.gp_list_at(s, ids[gp], when)

    assert run(url, go) == sorted(ids[m] for m in members)
