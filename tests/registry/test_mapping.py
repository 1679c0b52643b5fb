"""Register records → FHIR: every output is valid R4 and follows the no-basis mapping."""

from __future__ import annotations

from datetime import date

import orjson
import pytest
from tests.registry.synth import ORGNR, tenor, tenor_d

from akson.fhir.naming import (
    DNR_SYSTEM,
    FNR_SYSTEM,
    HELSEPERSONELLKATEGORI_SYSTEM,
    HER_ID_SYSTEM,
    HPR_SYSTEM,
    KOMMUNENR_SYSTEM,
    ORGNR_SYSTEM,
    PARENTAL_RESPONSIBILITY_SYSTEM,
    RESH_SYSTEM,
)
from akson.fhir.validation import validate
from akson.registry import mapping as m
from akson.registry.municipalities import municipality_organizations

KARI = tenor(date(1980, 11, 1), 123)
MOR = tenor(date(1955, 3, 4), 234)
BARN = tenor(date(2015, 6, 7), 567)
VERGE = tenor_d(date(1970, 1, 2), 345)


def person(**over: object) -> dict:
    rec = {
        "nin": KARI, "status": "bosatt", "birth_date": "1980-11-01", "gender": "female",
        "name": {"given": "Kari", "middle": "Nordmann", "family": "Hansen"},
        "address": {"lines": ["Storgata 1"], "postal_code": "0155", "city": "Oslo",
                    "municipality": "0301", "from": "2010-01-01"},
        "address_protection": "unclassified", "death_date": None,
        "family": [{"nin": MOR, "relation": "mor"}, {"nin": BARN, "relation": "barn"}],
        "parental_responsibility": [{"child_nin": BARN, "responsibility": "felles"}],
        "guardianship": [{"guardian_nin": VERGE}],
    }
    rec.update(over)
    return rec


def valid(resource: dict) -> dict:
    issues = validate(resource, allow_synthetic_ids=True)
    assert issues == [], [i.diagnostics for i in issues]
    return resource


def tags(resource: dict) -> list[tuple[str, str]]:
    return [(t["system"], t["code"]) for t in resource["meta"]["tag"]]


def test_patient_follows_no_basis() -> None:
    pat = valid(m.person_to_patient(person(), patient_id="p1"))
    assert pat["id"] == "p1"
    assert tags(pat) == [(m.SOURCE_TAG_SYSTEM, "freg")]
    assert pat["identifier"] == [{"system": FNR_SYSTEM, "value": KARI}]
    name = pat["name"][0]
    assert name["use"] == "official" and name["family"] == "Hansen" and name["given"] == ["Kari"]
    assert name["extension"] == [{"url": m.MIDDLENAME_EXT, "valueString": "Nordmann"}]
    addr = pat["address"][0]
    assert addr["district"] == "Oslo" and addr["postalCode"] == "0155"
    ext = addr["_district"]["extension"][0]
    assert ext["url"] == m.MUNICIPALITYCODE_EXT
    assert ext["valueCoding"]["system"] == KOMMUNENR_SYSTEM
    assert ext["valueCoding"]["code"] == "0301"
    assert pat["birthDate"] == "1980-11-01" and pat["gender"] == "female"
    assert "security" not in pat["meta"]


def test_d_number_gets_the_d_number_system() -> None:
    pat = valid(m.person_to_patient(person(nin=VERGE), patient_id="p2"))
    assert pat["identifier"][0]["system"] == DNR_SYSTEM


def test_deceased() -> None:
    pat = valid(m.person_to_patient(person(status="doed", death_date="2024-02-03"),
                                    patient_id="p1"))
    assert pat["deceasedDateTime"] == "2024-02-03"


def test_strictly_confidential_has_no_address_and_a_label() -> None:
    pat = valid(m.person_to_patient(person(address_protection="strictly_confidential"),
                                    patient_id="p1"))
    assert "address" not in pat
    blob = orjson.dumps(pat).decode()
    assert "Storgata" not in blob and "0155" not in blob
    assert {"system": m.ADDRESS_PROTECTION_SYSTEM, "code": "strictly-confidential"}.items() <= \
        pat["meta"]["security"][0].items()


@pytest.mark.parametrize("protection,code", [("confidential", "confidential"),
                                             ("client_address", "client-address")])
def test_other_protection_keeps_address_with_label(protection: str, code: str) -> None:
    pat = valid(m.person_to_patient(person(address_protection=protection), patient_id="p1"))
    assert pat["address"][0]["line"] == ["Storgata 1"]
    assert pat["meta"]["security"][0]["code"] == code


def test_relations_are_restricted_related_persons() -> None:
    ids = {MOR: "r-mor", BARN: "r-barn", VERGE: "r-verge"}
    rels = m.person_relations(person(), patient_id="p1", related_ids=ids)
    assert [r["id"] for r in rels] == ["r-mor", "r-barn", "r-verge"]
    for rel in rels:
        valid(rel)
        assert rel["patient"] == {"reference": "Patient/p1"}
        assert rel["meta"]["security"][0]["system"] == m.CONFIDENTIALITY_SYSTEM
        assert rel["meta"]["security"][0]["code"] == "R"
        assert tags(rel) == [(m.SOURCE_TAG_SYSTEM, "freg")]
    mor, barn, verge = rels
    assert mor["identifier"][0]["value"] == MOR
    assert mor["relationship"][0]["coding"][0] == {
        "system": m.FAMILY_RELATION_SYSTEM, "code": "mor", "display": "Mor"}
    # the child is both family "barn" and under parental responsibility: one resource
    codes = [c["coding"][0]["code"] for c in barn["relationship"]]
    assert codes == ["barn", "CHILD"]
    assert barn["extension"] == [{"url": m.PARENTAL_RESPONSIBILITY_EXT, "valueCoding": {
        "system": PARENTAL_RESPONSIBILITY_SYSTEM, "code": "felles"}}]
    assert verge["identifier"][0]["system"] == DNR_SYSTEM
    assert verge["relationship"][0]["coding"][0]["code"] == "GUARD"


def test_missing_related_id_does_not_echo_the_number() -> None:
    with pytest.raises(ValueError) as err:
        m.person_relations(person(), patient_id="p1", related_ids={})
    assert MOR not in str(err.value)


def test_practitioner() -> None:
    rec = {"hpr_number": "9144900", "nin": MOR, "name": {"given": "Ola", "family": "Lege"},
           "authorizations": [{"category": "LE", "from": "2010-06-01", "to": None}],
           "specialities": [{"code": "1", "display": "Allmennmedisin", "from": "2016-01-01",
                             "to": None}]}
    pr = valid(m.hpr_to_practitioner(rec, practitioner_id="hpr-1"))
    assert pr["identifier"] == [{"system": HPR_SYSTEM, "value": "9144900"},
                                {"system": FNR_SYSTEM, "value": MOR}]
    q0, q1 = pr["qualification"]
    assert q0["code"]["coding"][0] == {"system": HELSEPERSONELLKATEGORI_SYSTEM, "code": "LE"}
    assert q0["period"] == {"start": "2010-06-01"}
    assert q1["code"]["coding"][0]["display"] == "Allmennmedisin"
    assert tags(pr) == [(m.SOURCE_TAG_SYSTEM, "hpr")]


def test_organization() -> None:
    rec = {"orgnr": ORGNR[0], "name": "Bergen kommune", "kind": "kommune",
           "municipality": "4601", "parent_orgnr": None, "resh": None}
    org = valid(m.enhet_to_organization(rec, organization_id="o1", parent_id=None))
    assert org["identifier"] == [{"system": ORGNR_SYSTEM, "value": ORGNR[0]},
                                 {"system": KOMMUNENR_SYSTEM, "value": "4601"}]
    assert org["address"][0]["district"] == "Bergen"
    assert "partOf" not in org
    office = valid(m.enhet_to_organization(
        {**rec, "orgnr": ORGNR[1], "kind": "legekontor", "name": "Legesenter", "resh": "12"},
        organization_id="o2", parent_id="o1"))
    assert office["partOf"] == {"reference": "Organization/o1"}
    assert [i["system"] for i in office["identifier"]] == [ORGNR_SYSTEM, RESH_SYSTEM]


def test_gp_contract_and_membership() -> None:
    contract = {"kind": "contract", "contract_id": "K1", "hpr_number": "9144900",
                "orgnr": ORGNR[0], "municipality": "4601", "from": "2015-01-01", "to": None,
                "max_patients": 1200}
    role = valid(m.gp_contract_to_role(contract, role_id="r1", practitioner_id="hpr-1",
                                       organization_id="o1"))
    assert role["identifier"] == [{"system": m.FLR_CONTRACT_SYSTEM, "value": "K1"}]
    assert role["practitioner"] == {"reference": "Practitioner/hpr-1"}
    assert role["period"] == {"start": "2015-01-01"} and role["active"] is True
    assert role["code"][0]["coding"][0]["code"] == "fastlege"
    membership = {"kind": "membership", "contract_id": "K1", "nin": KARI,
                  "from": "2019-03-01", "to": "2021-01-01"}
    ep = valid(m.gp_membership_to_episode(membership, episode_id="e1", patient_id="p1",
                                          practitioner_id="hpr-1", organization_id="o1"))
    assert ep["careManager"] == {"reference": "Practitioner/hpr-1"}
    assert ep["period"] == {"start": "2019-03-01", "end": "2021-01-01"}
    assert ep["status"] == "finished"
    assert KARI not in orjson.dumps(ep).decode()


def test_ar_parties() -> None:
    org, ep = m.ar_to_resources(
        {"her_id": "8001", "kind": "organization", "name": "Bergen kommune",
         "orgnr": ORGNR[0]}, ids={"self": "o1", "endpoint": "ep1"})
    valid(org), valid(ep)
    assert {"system": HER_ID_SYSTEM, "value": "8001"} in org["identifier"]
    assert org["endpoint"] == [{"reference": "Endpoint/ep1"}]
    assert ep["address"] == "8001" and "identifier" not in ep
    svc, ep2 = m.ar_to_resources(
        {"her_id": "8002", "kind": "service", "parent_her_id": "8001",
         "name": "Sykepleietjeneste PLO", "service": {"code": "KP02",
                                                     "display": "Sykepleietjeneste"}},
        ids={"self": "s1", "endpoint": "ep2", "organization": "o1"})
    valid(svc), valid(ep2)
    assert svc["resourceType"] == "HealthcareService"
    assert svc["providedBy"] == {"reference": "Organization/o1"}
    role, ep3 = m.ar_to_resources(
        {"her_id": "8003", "kind": "person", "parent_her_id": "8001", "hpr_number": "9144900",
         "name": "Ola Lege"}, ids={"self": "pr1", "endpoint": "ep3", "organization": "o1"})
    valid(role), valid(ep3)
    assert role["practitioner"]["identifier"] == {"system": HPR_SYSTEM, "value": "9144900"}
    for res in (org, ep, svc, ep2, role, ep3):
        assert tags(res) == [(m.SOURCE_TAG_SYSTEM, "ar")]


def test_municipality_organizations() -> None:
    orgs = municipality_organizations()
    assert len(orgs) == 357
    assert len({o["id"] for o in orgs}) == 357
    oslo = next(o for o in orgs if o["id"] == "kommune-0301")
    assert oslo["identifier"] == [{"system": KOMMUNENR_SYSTEM, "value": "0301"}]
    assert oslo["name"] == "Oslo kommune"
    for org in orgs:
        valid(org)
