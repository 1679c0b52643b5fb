"""Tests for akson.fhir.profiles: the no-basis rules, cross-checked against the no-basis snapshots.

The published examples (CC0 copies in tests/data/no-basis-examples) run everywhere. The no-basis
2.2.2 package with snapshots has no licence file, so it is read only from /work/shared (override
with AKSON_NO_BASIS_PACKAGE) and the tests that need it skip, saying why, when it is absent.
"""

from __future__ import annotations

import copy
import json
import os
import random
from collections.abc import Callable
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from tests.shared_corpora import CORPORA

from akson.fhir.identifiers import make_fhn, make_fnr, make_orgnr
from akson.fhir.naming import (
    DNR_SYSTEM,
    FHN_SYSTEM,
    FNR_SYSTEM,
    FNR_SYSTEM_URL,
    HELSEPERSONELLKATEGORI_SYSTEM,
    HNR_TYPE_SYSTEM,
    HPR_SYSTEM,
    KOMMUNENR_OID,
    KOMMUNENR_SYSTEM,
    ORGNR_SYSTEM,
    PARENTAL_RESPONSIBILITY_SYSTEM,
    RESH_SYSTEM,
)
from akson.fhir.outcome import Issue
from akson.fhir.profiles import no_basis
from akson.fhir.profiles.no_basis import (
    ADDRESS_OFFICIAL_URL,
    CONNECTION_TYPE_SYSTEM,
    FAMILY_RELATION_SYSTEM,
    MIDDLENAME_URL,
    MUNICIPALITY_CODE_URL,
    PATIENT_CITIZENSHIP_URL,
    PERSON_CITIZENSHIP_URL,
    PROFILES,
    PROPERTY_INFORMATION_URL,
    URBAN_DISTRICT_URL,
    profile_for,
)
from akson.fhir.profiles.snapshot import check_snapshot
from akson.fhir.validation import validate

DATA = Path(__file__).parents[1] / "data"
EXAMPLES = DATA / "no-basis-examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.json"))
PACKAGE = Path(
    os.environ.get(
        "AKSON_NO_BASIS_PACKAGE",
        str(CORPORA / "norway/no-basis/package-2.2.2-snapshots/package"),
    )
)
PACKAGE_EXAMPLE_NAMES = [
    "Patient-e70f0ba2-44d8-4f14-9c3a-ff4c6ead7473.json",
    "Vital-signs-weight-v2.json",
    "Vital-signs-weight.json",
    "no-basis-Appointment-example.json",
    "no-basis-AppointmentResponse-example.json",
    "no-basis-HealthcareService-example.json",
    "no-basis-Organization-example.json",
    "no-basis-Patient-Espen-Eksempel.json",
    "no-basis-Patient-Jannice-Soreng.json",
    "no-basis-Practitioner-example.json",
    "no-basis-Procedure-example.json",
    "no-basis-RelatedPerson-AErlend-Sorgard-person-extension.json",
    "no-basis-RelatedPerson-AErlend-Sorgard.json",
    "no-basis-RelatedPerson-Solid-aeresdoktor.json",
]

# Defects of the published examples, found by validate() and check() alike: file → the FHIRPath
# expressions of the issues. The masked FNR "210377xxxxx" and the orgnr "test" are placeholders
# in the examples; Pasient-Middle-Name-1's FNR has a wrong check digit; the package's
# HealthcareService example also has an id with a space (corpora README).
IG_DEFECTS: dict[str, list[str]] = {
    "HealthcareService-no-basis-HealthcareService-example.json": [
        "HealthcareService.providedBy.identifier.value"
    ],
    "Patient-EspenEksempel.json": ["Patient.identifier[0].value"],
    "Patient-Pasient-Middle-Name-1.json": ["Patient.identifier[0].value"],
}
PACKAGE_VALIDATE_DEFECTS: dict[str, list[str]] = {
    "no-basis-HealthcareService-example.json": [
        "HealthcareService.id",
        "HealthcareService.providedBy.identifier.value",
    ],
    "no-basis-Patient-Espen-Eksempel.json": ["Patient.identifier[0].value"],
}
PACKAGE_CHECK_DEFECTS: dict[str, list[str]] = {
    "no-basis-HealthcareService-example.json": ["HealthcareService.providedBy.identifier.value"],
    "no-basis-Patient-Espen-Eksempel.json": ["Patient.identifier[0].value"],
}


def load(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return result


def expressions(issues: list[Issue]) -> list[str]:
    return [e for i in issues for e in i.expression]


def identifier_values(resource: Any) -> list[str]:
    """Every Identifier.value in a resource (wherever it is), to assert none leaks."""
    found: list[str] = []
    if isinstance(resource, dict):
        if isinstance(resource.get("system"), str) and isinstance(resource.get("value"), str):
            found.append(resource["value"])
        for v in resource.values():
            found += identifier_values(v)
    elif isinstance(resource, list):
        for v in resource:
            found += identifier_values(v)
    return found


def assert_no_values_in(issues: list[Issue], resource: dict[str, Any]) -> None:
    for value in identifier_values(resource):
        if len(value) >= 3:  # "720"-style short ids could match inside a path by chance
            assert all(value not in i.diagnostics for i in issues), issues


# --------------------------------------------------------------------- the no-basis package


def package_dir() -> Path:
    """The snapshot package directory, or skip (saying why) when this machine has none."""
    if not (PACKAGE / "package.json").is_file():
        reason = (
            f"no-basis 2.2.2 snapshot package not found at {PACKAGE} (it has no licence file, so it "
            "is not copied into the project; set AKSON_NO_BASIS_PACKAGE to run these tests)"
        )
        print(reason)
        pytest.skip(reason)
    return PACKAGE


@cache
def _structure_definitions(directory: str) -> dict[str, dict[str, Any]]:
    sds: dict[str, dict[str, Any]] = {}
    for f in Path(directory).glob("*.json"):
        d = load(f)
        if d.get("resourceType") == "StructureDefinition":
            sds[d["url"]] = d
    return sds


def structure_definitions() -> dict[str, dict[str, Any]]:
    return _structure_definitions(str(package_dir()))


def snapshot_issues(resource: dict[str, Any]) -> list[Issue]:
    """The snapshot checker's verdict on `resource` against its no-basis profile."""
    sds = structure_definitions()
    sd = sds[PROFILES[resource["resourceType"]]]
    return check_snapshot(sd, resource, sds.get)


# ------------------------------------------------------------- (a) the IG build's examples


def test_all_ig_build_examples_were_copied_with_attribution() -> None:
    assert len(EXAMPLE_FILES) == 23
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    assert "no-basis-examples/" in readme and "CC0" in readme


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_ig_build_example_passes_validate_and_check(path: Path) -> None:
    resource = load(path)
    expected = IG_DEFECTS.get(path.name, [])
    validate_issues = validate(resource)
    check_issues = no_basis.check(resource)
    assert expressions(validate_issues) == expected
    assert expressions(check_issues) == expected
    assert all(i.severity == "error" for i in check_issues)
    assert_no_values_in(validate_issues + check_issues, resource)


def test_ig_build_defects_are_the_known_ones() -> None:
    # Each exception above is a real defect of the example, not a gap in the checks.
    hs = load(EXAMPLES / "HealthcareService-no-basis-HealthcareService-example.json")
    assert hs["providedBy"]["identifier"] == {"system": ORGNR_SYSTEM, "value": "test"}
    assert load(EXAMPLES / "Patient-EspenEksempel.json")["identifier"][0]["value"].endswith("xxxxx")
    (issue,) = no_basis.check(load(EXAMPLES / "Patient-Pasient-Middle-Name-1.json"))
    assert "check digit" in issue.diagnostics


# ------------------------------------------------------ (b) the snapshot package's examples


def test_package_has_its_14_examples() -> None:
    names = sorted(p.name for p in (package_dir() / "examples").glob("*.json"))
    assert names == sorted(PACKAGE_EXAMPLE_NAMES)


@pytest.mark.parametrize("name", PACKAGE_EXAMPLE_NAMES)
def test_package_example_validates(name: str) -> None:
    resource = load(package_dir() / "examples" / name)
    validate_issues = validate(resource)
    check_issues = no_basis.check(resource)
    assert expressions(validate_issues) == PACKAGE_VALIDATE_DEFECTS.get(name, [])
    assert expressions(check_issues) == PACKAGE_CHECK_DEFECTS.get(name, [])
    assert_no_values_in(validate_issues + check_issues, resource)


def test_package_healthcare_service_id_with_a_space_is_refused() -> None:
    resource = load(package_dir() / "examples" / "no-basis-HealthcareService-example.json")
    assert " " in resource["id"]
    issues = [i for i in validate(resource) if i.expression == ("HealthcareService.id",)]
    assert len(issues) == 1 and "not a valid id" in issues[0].diagnostics


# ----------------------------------------------------------- (c) the snapshots themselves


def test_every_profile_url_is_a_snapshot_in_the_package() -> None:
    sds = structure_definitions()
    for rtype, url in PROFILES.items():
        assert sds[url]["type"] == rtype
        assert sds[url]["snapshot"]["element"]
    # …and every no-basis resource profile in the package has its entry in PROFILES.
    prefix = "http://hl7.no/fhir/StructureDefinition/no-basis-"
    profiled = {sd["type"] for url, sd in sds.items() if url.startswith(prefix) and sd["kind"] == "resource"}
    assert profiled == set(PROFILES)


# The package's two Observation examples have no no-basis profile to be checked against.
PACKAGE_UNPROFILED = {"Vital-signs-weight-v2.json", "Vital-signs-weight.json"}


# (where, file name) of every example that has a no-basis profile to be checked against.
PROFILED_EXAMPLES = [("ig", p.name) for p in EXAMPLE_FILES if load(p)["resourceType"] in PROFILES] + [
    ("package", n) for n in PACKAGE_EXAMPLE_NAMES if n not in PACKAGE_UNPROFILED
]


def test_unprofiled_examples_are_only_naming_systems_search_parameters_and_observations() -> None:
    unprofiled = {load(p)["resourceType"] for p in EXAMPLE_FILES if load(p)["resourceType"] not in PROFILES}
    assert unprofiled == {"NamingSystem", "SearchParameter"}
    assert len(PROFILED_EXAMPLES) == 14 + 12
    for n in PACKAGE_UNPROFILED:
        assert load(package_dir() / "examples" / n)["resourceType"] == "Observation"


@pytest.mark.parametrize(("where", "name"), PROFILED_EXAMPLES, ids=[f"{w}/{n}" for w, n in PROFILED_EXAMPLES])
def test_snapshot_checker_accepts_the_examples(where: str, name: str) -> None:
    resource = load(EXAMPLES / name if where == "ig" else package_dir() / "examples" / name)
    # The snapshots know nothing of check digits, so the defective examples pass here too.
    assert snapshot_issues(resource) == []


# --------------------------------------------------- resources Akson writes (cross-checked)


def person_number(born: date, start: int, *, d_number: bool = False) -> str:
    """A valid (non-synthetic) FNR or D-nummer: the first individnummer from `start` that has one."""
    for individ in range(start, start + 50):
        number = make_fnr(born, individ, d_number=d_number)
        if number is not None:
            return number
    raise AssertionError("no valid number")


FNR = person_number(date(1985, 3, 21), 123)
DNR = person_number(date(1990, 5, 4), 234, d_number=True)
FNR2 = person_number(date(1972, 11, 2), 456)
FHN = make_fhn(random.Random(7))
ORGNR = make_orgnr(random.Random(3))
ORGNR2 = make_orgnr(random.Random(4))
HPR = "9144889"
RESH = "4001031"
HNR_VALUE = "H7781234"


def flip_last(value: str) -> str:
    return value[:-1] + str((int(value[-1]) + 1) % 10)


def municipality(code: str = "0301", system: str = KOMMUNENR_SYSTEM) -> dict[str, Any]:
    return {"url": MUNICIPALITY_CODE_URL, "valueCoding": {"system": system, "code": code}}


def address() -> dict[str, Any]:
    return {
        "extension": [
            {"url": ADDRESS_OFFICIAL_URL, "valueBoolean": True},
            {
                "url": URBAN_DISTRICT_URL,
                "valueCoding": {"system": "urn:oid:2.16.578.1.12.4.1.1.3403", "code": "030101"},
            },
            {
                "url": PROPERTY_INFORMATION_URL,
                "extension": [
                    {"url": "cadastralUnitNumber", "valueInteger": 15},
                    {"url": "municipality", "valueCoding": {"system": KOMMUNENR_OID, "code": "0301"}},
                ],
            },
        ],
        "use": "home",
        "line": ["Storgata 1"],
        "city": "Oslo",
        "district": "Oslo",
        "_district": {"extension": [municipality()]},
        "postalCode": "0155",
        "country": "NO",
    }


def name(family: str = "Nordmann", middle: str = "Mellom") -> dict[str, Any]:
    return {
        "extension": [{"url": MIDDLENAME_URL, "valueString": middle}],
        "family": family,
        "given": ["Kari"],
    }


def citizenship(url: str) -> dict[str, Any]:
    return {
        "url": url,
        "extension": [
            {
                "url": "code",
                "valueCodeableConcept": {"coding": [{"system": "urn:iso:std:iso:3166", "code": "NO"}]},
            },
            {"url": "period", "valuePeriod": {"start": "2001-01-01"}},
        ],
    }


def good_patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": "p1",
        "extension": [citizenship(PATIENT_CITIZENSHIP_URL)],
        "identifier": [
            {"system": FNR_SYSTEM, "value": FNR},
            {"system": DNR_SYSTEM, "value": DNR},
            {"system": FHN_SYSTEM, "value": FHN},
            {
                "type": {"coding": [{"system": HNR_TYPE_SYSTEM, "code": "HNR"}]},
                "system": "HNR",
                "value": HNR_VALUE,
                "assigner": {"reference": "Organization/org1"},
            },
        ],
        "name": [name()],
        "gender": "female",
        "address": [address()],
        "contact": [{"name": name("Olsen", "Pårørende"), "address": address()}],
        "generalPractitioner": [{"reference": "Practitioner/pr1"}],
        "managingOrganization": {"reference": "Organization/org1"},
    }


def good_practitioner() -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "id": "pr1",
        "identifier": [{"system": HPR_SYSTEM, "value": HPR}, {"system": FNR_SYSTEM, "value": FNR2}],
        "name": [name("Lege")],
        "address": [{"use": "work", "line": ["Legesenteret"], "city": "Bodø", "postalCode": "8012"}],
        "qualification": [{"code": {"coding": [{"system": HELSEPERSONELLKATEGORI_SYSTEM, "code": "LE"}]}}],
    }


def good_organization() -> dict[str, Any]:
    org_address = address()
    org_address["use"] = "work"
    return {
        "resourceType": "Organization",
        "id": "org1",
        "identifier": [{"system": ORGNR_SYSTEM, "value": ORGNR}, {"system": RESH_SYSTEM, "value": RESH}],
        "type": [{"coding": [{"system": "urn:oid:2.16.578.1.12.4.1.1.8628", "code": "1"}]}],
        "name": "Eksempel kommune, helsestasjon",
        "address": [org_address],
        "partOf": {"reference": "Organization/kommune", "display": "Eksempel kommune"},
    }


def good_related_person() -> dict[str, Any]:
    return {
        "resourceType": "RelatedPerson",
        "id": "rp1",
        "extension": [citizenship(PERSON_CITIZENSHIP_URL)],
        "identifier": [{"system": FNR_SYSTEM, "value": FNR2}],
        "patient": {"reference": "Patient/p1"},
        "relationship": [
            {"coding": [{"system": FAMILY_RELATION_SYSTEM, "code": "far"}]},
            {"coding": [{"system": PARENTAL_RESPONSIBILITY_SYSTEM, "code": "felles"}]},
        ],
        "name": [name("Far")],
        "address": [address()],
    }


def good_practitioner_role() -> dict[str, Any]:
    return {
        "resourceType": "PractitionerRole",
        "id": "role1",
        "practitioner": {"reference": "Practitioner/pr1"},
        "organization": {"reference": "Organization/org1"},
        "code": [{"coding": [{"system": "urn:oid:2.16.578.1.12.4.1.1.9034", "code": "1"}]}],
        "specialty": [{"coding": [{"system": "urn:oid:2.16.578.1.12.4.1.1.8451", "code": "1"}]}],
        "healthcareService": [{"reference": "HealthcareService/hs1"}],
        "location": [{"reference": "Location/loc1"}],
        "endpoint": [{"reference": "Endpoint/ep1"}],
    }


def good_healthcare_service() -> dict[str, Any]:
    return {
        "resourceType": "HealthcareService",
        "id": "hs1",
        "active": True,
        "providedBy": {
            "reference": "Organization/org1",
            "identifier": {"system": ORGNR_SYSTEM, "value": ORGNR},
        },
        "specialty": [{"coding": [{"system": "urn:oid:2.16.578.1.12.4.1.1.8655", "code": "S0208"}]}],
        "name": "Helsestasjon",
    }


def good_endpoint() -> dict[str, Any]:
    return {
        "resourceType": "Endpoint",
        "id": "ep1",
        "status": "active",
        "connectionType": {"system": CONNECTION_TYPE_SYSTEM, "code": "no-amqp"},
        "payloadType": [{"text": "Dialogmelding"}],
        "address": "amqps://mq.example.org/queue",
        "managingOrganization": {"reference": "Organization/org1"},
    }


def good_location() -> dict[str, Any]:
    loc_address = address()
    loc_address["use"] = "work"
    return {
        "resourceType": "Location",
        "id": "loc1",
        "name": "Helsestasjonen",
        "address": loc_address,
        "managingOrganization": {"reference": "Organization/org1"},
    }


GOOD: dict[str, Callable[[], dict[str, Any]]] = {
    "Patient": good_patient,
    "Practitioner": good_practitioner,
    "Organization": good_organization,
    "RelatedPerson": good_related_person,
    "PractitionerRole": good_practitioner_role,
    "HealthcareService": good_healthcare_service,
    "Endpoint": good_endpoint,
    "Location": good_location,
}


@pytest.mark.parametrize("rtype", GOOD)
def test_resources_akson_writes_pass(rtype: str) -> None:
    resource = GOOD[rtype]()
    assert validate(resource) == []
    assert no_basis.check(resource) == []


@pytest.mark.parametrize("rtype", GOOD)
def test_what_check_accepts_the_snapshot_accepts(rtype: str) -> None:
    assert snapshot_issues(GOOD[rtype]()) == []


def test_profile_for() -> None:
    assert (
        profile_for({"resourceType": "Patient"}) == "http://hl7.no/fhir/StructureDefinition/no-basis-Patient"
    )
    assert profile_for("Organization") == "http://hl7.no/fhir/StructureDefinition/no-basis-Organization"
    assert profile_for({"resourceType": "Observation"}) is None
    assert profile_for({"resourceType": 7}) is None
    assert profile_for(None) is None
    assert set(GOOD) <= set(PROFILES)


# --------------------------------------------------------------- (d) each rule, broken


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(r: dict[str, Any]) -> None:
        node: Any = r
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return mutate


def _delete(*paths: list[Any]) -> Callable[[dict[str, Any]], None]:
    def mutate(r: dict[str, Any]) -> None:
        for path in paths:
            node: Any = r
            for part in path[:-1]:
                node = node[part]
            del node[path[-1]]

    return mutate


def _append(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(r: dict[str, Any]) -> None:
        node: Any = r
        for part in path:
            node = node[part]
        node.append(copy.deepcopy(value))

    return mutate


_PID = ["identifier"]
_DISTRICT_EXT = ["address", 0, "_district", "extension"]
_MUNI = "Patient.address[0].district.extension[0]"

# (id, resource type, mutation, expected expression, the secret that must not leak, whether the
# profile snapshot itself also refuses the result)
BROKEN: list[tuple[str, str, Callable[[dict[str, Any]], None], str, str | None, bool]] = [
    (
        "fnr-check-digit",
        "Patient",
        _set([*_PID, 0, "value"], flip_last(FNR)),
        "Patient.identifier[0].value",
        flip_last(FNR),
        False,
    ),
    (
        "fnr-not-11-digits",
        "Patient",
        _set([*_PID, 0, "value"], FNR[:10]),
        "Patient.identifier[0].value",
        FNR[:10],
        False,
    ),
    (
        "fnr-slice-holds-dnr",
        "Patient",
        _set([*_PID, 0, "value"], DNR),
        "Patient.identifier[0].value",
        DNR,
        False,
    ),
    (
        "dnr-slice-holds-fnr",
        "Patient",
        _set([*_PID, 1, "value"], FNR),
        "Patient.identifier[1].value",
        FNR,
        False,
    ),
    (
        "dnr-check-digit",
        "Patient",
        _set([*_PID, 1, "value"], flip_last(DNR)),
        "Patient.identifier[1].value",
        flip_last(DNR),
        False,
    ),
    (
        "fhn-check-digit",
        "Patient",
        _set([*_PID, 2, "value"], flip_last(FHN)),
        "Patient.identifier[2].value",
        flip_last(FHN),
        False,
    ),
    ("fnr-without-value", "Patient", _delete([*_PID, 0, "value"]), "Patient.identifier[0].value", None, True),
    (
        "hnr-without-assigner",
        "Patient",
        _delete([*_PID, 3, "assigner"]),
        "Patient.identifier[3].assigner",
        HNR_VALUE,
        True,
    ),
    (
        "hnr-without-type",
        "Patient",
        _delete([*_PID, 3, "type"]),
        "Patient.identifier[3].type",
        HNR_VALUE,
        False,
    ),
    (
        "hnr-wrong-type-code",
        "Patient",
        _set([*_PID, 3, "type", "coding", 0, "code"], "FNR"),
        "Patient.identifier[3].type.coding[0]",
        HNR_VALUE,
        True,
    ),
    ("hnr-without-value", "Patient", _delete([*_PID, 3, "value"]), "Patient.identifier[3].value", None, True),
    (
        "municipality-code-3-digits",
        "Patient",
        _set([*_DISTRICT_EXT, 0, "valueCoding", "code"], "301"),
        f"{_MUNI}.value.code",
        None,
        False,
    ),
    (
        "municipality-code-letters",
        "Patient",
        _set([*_DISTRICT_EXT, 0, "valueCoding", "code"], "OSLO"),
        f"{_MUNI}.value.code",
        None,
        False,
    ),
    (
        "municipality-wrong-system",
        "Patient",
        _set([*_DISTRICT_EXT, 0, "valueCoding", "system"], "urn:oid:2.16.578.1.12.4.1.1.3403"),
        f"{_MUNI}.value.system",
        None,
        False,
    ),
    (
        "municipality-no-system",
        "Patient",
        _delete([*_DISTRICT_EXT, 0, "valueCoding", "system"]),
        f"{_MUNI}.value.system",
        None,
        False,
    ),
    (
        "municipality-value-string",
        "Patient",
        _set([*_DISTRICT_EXT, 0], {"url": MUNICIPALITY_CODE_URL, "valueString": "0301"}),
        _MUNI,
        None,
        True,
    ),
    (
        "municipality-twice",
        "Patient",
        _append(_DISTRICT_EXT, municipality("0301")),
        "Patient.address[0].district.extension[1]",
        None,
        True,
    ),
    (
        "municipality-on-address",
        "Patient",
        _append(["address", 0, "extension"], municipality()),
        "Patient.address[0].extension[3]",
        None,
        False,
    ),
    (
        "urban-district-code",
        "Patient",
        _set(["address", 0, "extension", 1, "valueCoding", "code"], "0301"),
        "Patient.address[0].extension[1].value.code",
        None,
        False,
    ),
    (
        "official-value-string",
        "Patient",
        _set(["address", 0, "extension", 0], {"url": ADDRESS_OFFICIAL_URL, "valueString": "true"}),
        "Patient.address[0].extension[0]",
        None,
        True,
    ),
    (
        "official-twice",
        "Patient",
        _append(["address", 0, "extension"], {"url": ADDRESS_OFFICIAL_URL, "valueBoolean": False}),
        "Patient.address[0].extension[3]",
        None,
        True,
    ),
    (
        "property-municipality-code",
        "Patient",
        _set(["address", 0, "extension", 2, "extension", 1, "valueCoding", "code"], "03011"),
        "Patient.address[0].extension[2].extension[1].value.code",
        None,
        False,
    ),
    (
        "property-cadastral-twice",
        "Patient",
        _append(
            ["address", 0, "extension", 2, "extension"], {"url": "cadastralUnitNumber", "valueInteger": 1}
        ),
        "Patient.address[0].extension[2].extension[2]",
        None,
        True,
    ),
    (
        "middlename-value-integer",
        "Patient",
        _set(["name", 0, "extension", 0], {"url": MIDDLENAME_URL, "valueInteger": 3}),
        "Patient.name[0].extension[0]",
        None,
        True,
    ),
    (
        "middlename-no-value",
        "Patient",
        _set(["name", 0, "extension", 0], {"url": MIDDLENAME_URL}),
        "Patient.name[0].extension[0]",
        None,
        False,
    ),
    (
        "middlename-twice",
        "Patient",
        _append(["name", 0, "extension"], {"url": MIDDLENAME_URL, "valueString": "X"}),
        "Patient.name[0].extension[1]",
        None,
        True,
    ),
    (
        "contact-middlename-code",
        "Patient",
        _set(["contact", 0, "name", "extension", 0], {"url": MIDDLENAME_URL, "valueCode": "x"}),
        "Patient.contact[0].name.extension[0]",
        None,
        True,
    ),
    (
        "middlename-on-patient",
        "Patient",
        _append(["extension"], {"url": MIDDLENAME_URL, "valueString": "X"}),
        "Patient.extension[1]",
        None,
        False,
    ),
    (
        "citizenship-with-value",
        "Patient",
        _set(["extension", 0, "valueString"], "NO"),
        "Patient.extension[0]",
        None,
        True,
    ),
    (
        "citizenship-code-twice",
        "Patient",
        _append(["extension", 0, "extension"], {"url": "code", "valueCodeableConcept": {"text": "SE"}}),
        "Patient.extension[0].extension[2]",
        None,
        True,
    ),
    (
        "citizenship-code-as-coding",
        "Patient",
        _set(["extension", 0, "extension", 0], {"url": "code", "valueCoding": {"code": "NO"}}),
        "Patient.extension[0].extension[0]",
        None,
        True,
    ),
    (
        "person-citizenship-on-patient",
        "Patient",
        _set(["extension", 0, "url"], PERSON_CITIZENSHIP_URL),
        "Patient.extension[0]",
        None,
        False,
    ),
    (
        "general-practitioner-target",
        "Patient",
        _set(["generalPractitioner", 0, "reference"], "Patient/p2"),
        "Patient.generalPractitioner[0].reference",
        None,
        False,
    ),
    (
        "contained-orgnr",
        "Patient",
        _set(
            ["contained"],
            [
                {
                    "resourceType": "Organization",
                    "id": "o",
                    "identifier": [{"system": ORGNR_SYSTEM, "value": flip_last(ORGNR2)}],
                }
            ],
        ),
        "Patient.contained[0].identifier[0].value",
        flip_last(ORGNR2),
        False,
    ),
    (
        "hpr-leading-zero",
        "Practitioner",
        _set([*_PID, 0, "value"], "0" + HPR),
        "Practitioner.identifier[0].value",
        "0" + HPR,
        False,
    ),
    (
        "practitioner-fnr-check-digit",
        "Practitioner",
        _set([*_PID, 1, "value"], flip_last(FNR2)),
        "Practitioner.identifier[1].value",
        flip_last(FNR2),
        False,
    ),
    (
        "qualification-without-code",
        "Practitioner",
        _delete(["qualification", 0, "code", "coding", 0, "code"]),
        "Practitioner.qualification[0].code.coding[0].code",
        None,
        True,
    ),
    (
        "practitioner-middlename-twice",
        "Practitioner",
        _append(["name", 0, "extension"], {"url": MIDDLENAME_URL, "valueString": "Y"}),
        "Practitioner.name[0].extension[1]",
        None,
        True,
    ),
    (
        "orgnr-check-digit",
        "Organization",
        _set([*_PID, 0, "value"], flip_last(ORGNR)),
        "Organization.identifier[0].value",
        flip_last(ORGNR),
        False,
    ),
    (
        "orgnr-8-digits",
        "Organization",
        _set([*_PID, 0, "value"], ORGNR[:8]),
        "Organization.identifier[0].value",
        ORGNR[:8],
        False,
    ),
    (
        "resh-not-digits",
        "Organization",
        _set([*_PID, 1, "value"], "R4001031"),
        "Organization.identifier[1].value",
        "R4001031",
        False,
    ),
    (
        "part-of-target",
        "Organization",
        _set(["partOf", "reference"], "Location/l1"),
        "Organization.partOf.reference",
        None,
        False,
    ),
    (
        "org-home-address",
        "Organization",
        _set(["address", 0, "use"], "home"),
        "Organization.address[0].use",
        None,
        False,
    ),
    (
        "org-type-without-code",
        "Organization",
        _delete(["type", 0, "coding", 0, "code"]),
        "Organization.type[0].coding[0].code",
        None,
        True,
    ),
    (
        "org-without-name-or-identifier",
        "Organization",
        _delete(["name"], ["identifier"]),
        "Organization",
        None,
        False,
    ),
    (
        "family-relation-code",
        "RelatedPerson",
        _set(["relationship", 0, "coding", 0, "code"], "onkel"),
        "RelatedPerson.relationship[0].coding[0].code",
        None,
        False,
    ),
    (
        "parental-responsibility-code",
        "RelatedPerson",
        _set(["relationship", 1, "coding", 0, "code"], "begge"),
        "RelatedPerson.relationship[1].coding[0].code",
        None,
        False,
    ),
    (
        "parental-responsibility-no-code",
        "RelatedPerson",
        _delete(["relationship", 1, "coding", 0, "code"]),
        "RelatedPerson.relationship[1].coding[0].code",
        None,
        False,
    ),
    (
        "related-person-dnr-slice",
        "RelatedPerson",
        _set([*_PID, 0, "system"], DNR_SYSTEM),
        "RelatedPerson.identifier[0].value",
        FNR2,
        False,
    ),
    (
        "related-patient-target",
        "RelatedPerson",
        _set(["patient", "reference"], "Practitioner/pr1"),
        "RelatedPerson.patient.reference",
        None,
        False,
    ),
    (
        "patient-citizenship-on-related-person",
        "RelatedPerson",
        _set(["extension", 0, "url"], PATIENT_CITIZENSHIP_URL),
        "RelatedPerson.extension[0]",
        None,
        False,
    ),
    (
        "role-code-without-code",
        "PractitionerRole",
        _delete(["code", 0, "coding", 0, "code"]),
        "PractitionerRole.code[0].coding[0].code",
        None,
        True,
    ),
    (
        "role-organization-target",
        "PractitionerRole",
        _set(["organization", "type"], "Practitioner"),
        "PractitionerRole.organization.type",
        None,
        False,
    ),
    (
        "provided-by-without-identifier",
        "HealthcareService",
        _delete(["providedBy", "identifier"]),
        "HealthcareService.providedBy.identifier",
        None,
        False,
    ),
    (
        "provided-by-hpr-system",
        "HealthcareService",
        _set(["providedBy", "identifier", "system"], HPR_SYSTEM),
        "HealthcareService.providedBy.identifier.system",
        ORGNR,
        False,
    ),
    (
        "provided-by-orgnr-check-digit",
        "HealthcareService",
        _set(["providedBy", "identifier", "value"], flip_last(ORGNR)),
        "HealthcareService.providedBy.identifier.value",
        flip_last(ORGNR),
        False,
    ),
    (
        "service-specialty-without-code",
        "HealthcareService",
        _delete(["specialty", 0, "coding", 0, "code"]),
        "HealthcareService.specialty[0].coding[0].code",
        None,
        True,
    ),
    ("endpoint-without-address", "Endpoint", _delete(["address"]), "Endpoint.address", None, True),
    (
        "endpoint-connection-type-code",
        "Endpoint",
        _set(["connectionType", "code"], "no-smtp"),
        "Endpoint.connectionType.code",
        None,
        False,
    ),
    (
        "location-municipality-code",
        "Location",
        _set(["address", "_district", "extension", 0, "valueCoding", "code"], "12345"),
        "Location.address.district.extension[0].value.code",
        None,
        False,
    ),
]


@pytest.mark.parametrize(
    ("rtype", "mutate", "where", "secret"), [b[1:5] for b in BROKEN], ids=[b[0] for b in BROKEN]
)
def test_check_refuses(
    rtype: str, mutate: Callable[[dict[str, Any]], None], where: str, secret: str | None
) -> None:
    resource = GOOD[rtype]()
    mutate(resource)
    issues = no_basis.check(resource)
    assert where in expressions(issues), issues
    assert all(i.severity == "error" and i.expression for i in issues)
    assert all(i.diagnostics.startswith(i.expression[0]) for i in issues)
    if secret is not None:
        assert all(secret not in i.diagnostics for i in issues), issues
    assert_no_values_in(issues, resource)


PROFILE_REFUSES = [b for b in BROKEN if b[5]]


@pytest.mark.parametrize(
    ("rtype", "mutate"), [b[1:3] for b in PROFILE_REFUSES], ids=[b[0] for b in PROFILE_REFUSES]
)
def test_snapshot_refuses_the_structural_breaks_too(
    rtype: str, mutate: Callable[[dict[str, Any]], None]
) -> None:
    resource = GOOD[rtype]()
    mutate(resource)
    assert snapshot_issues(resource) != []


PROFILE_ACCEPTS = [b for b in BROKEN if not b[5]]


@pytest.mark.parametrize(
    ("rtype", "mutate"), [b[1:3] for b in PROFILE_ACCEPTS], ids=[b[0] for b in PROFILE_ACCEPTS]
)
def test_snapshot_cannot_see_the_other_rules(rtype: str, mutate: Callable[[dict[str, Any]], None]) -> None:
    # Check digits, code systems, invariants, reference targets, extension contexts: beyond what
    # the snapshot checker reads. Asserted so a stronger checker shows up as a failing test.
    resource = GOOD[rtype]()
    mutate(resource)
    assert snapshot_issues(resource) == []


def test_alias_system_is_a_warning_not_an_error() -> None:
    resource = good_patient()
    resource["identifier"][0]["system"] = FNR_SYSTEM_URL
    (issue,) = no_basis.check(resource)
    assert issue.severity == "warning"
    assert issue.expression == ("Patient.identifier[0].system",)
    assert FNR not in issue.diagnostics
    resource["identifier"][0]["system"] = "2.16.578.1.12.4.1.4.1"  # an OID without urn:oid:
    assert [i.severity for i in no_basis.check(resource)] == ["warning"]


def test_municipality_code_system_aliases_are_accepted() -> None:
    for system in no_basis.KOMMUNENR_SYSTEMS:
        resource = good_patient()
        resource["address"][0]["_district"]["extension"] = [municipality("4601", system)]
        assert no_basis.check(resource) == []


def test_every_parental_responsibility_code_is_accepted() -> None:
    for code in ("felles", "mor", "far", "medmor", "andre", "ukjent"):
        resource = good_related_person()
        resource["relationship"][1]["coding"][0]["code"] = code
        assert no_basis.check(resource) == []


@pytest.mark.parametrize(
    "resource",
    [
        None,
        "Patient",
        [],
        {},
        {"resourceType": 3},
        {"resourceType": "Patient", "identifier": "x", "name": 5, "address": [None, 1, "x"]},
        {"resourceType": "Patient", "identifier": [{"system": FNR_SYSTEM, "value": 12345678901}]},
        {"resourceType": "Patient", "address": [{"_district": [], "extension": {"url": 3}}]},
        {"resourceType": "Patient", "extension": [{"url": PATIENT_CITIZENSHIP_URL, "extension": "x"}]},
        {"resourceType": "Patient", "contained": [{"resourceType": "Patient", "contained": [{}]}]},
        {"resourceType": "Endpoint", "connectionType": "x", "address": 3},
        {"resourceType": "HealthcareService", "providedBy": [{"identifier": []}]},
    ],
)
def test_check_never_raises_on_odd_shapes(resource: Any) -> None:
    issues = no_basis.check(resource)
    assert all(i.expression for i in issues)


def test_check_runs_on_the_r4_examples() -> None:
    # The official R4 examples are not no-basis resources; the checks must still run on them.
    for path in sorted((DATA / "r4-examples").glob("*.json")):
        for issue in no_basis.check(load(path)):
            assert issue.expression


# ------------------------------------------- the snapshot checker on a hand-written profile

_EXT_URL = "http://example.org/fhir/StructureDefinition/nickname"
_TINY_EXTENSION: dict[str, Any] = {
    "resourceType": "StructureDefinition",
    "url": _EXT_URL,
    "type": "Extension",
    "kind": "complex-type",
    "snapshot": {
        "element": [
            {"id": "Extension", "path": "Extension", "min": 0, "max": "*"},
            {"id": "Extension.url", "path": "Extension.url", "min": 1, "max": "1", "fixedUri": _EXT_URL},
            {
                "id": "Extension.value[x]",
                "path": "Extension.value[x]",
                "min": 1,
                "max": "1",
                "type": [{"code": "string"}],
            },
        ]
    },
}
_TINY_PATIENT: dict[str, Any] = {
    "resourceType": "StructureDefinition",
    "url": "http://example.org/fhir/StructureDefinition/tiny-patient",
    "type": "Patient",
    "kind": "resource",
    "snapshot": {
        "element": [
            {"id": "Patient", "path": "Patient", "min": 0, "max": "*"},
            {
                "id": "Patient.extension",
                "path": "Patient.extension",
                "min": 0,
                "max": "*",
                "slicing": {"discriminator": [{"type": "value", "path": "url"}], "rules": "open"},
            },
            {
                "id": "Patient.extension:nickname",
                "path": "Patient.extension",
                "sliceName": "nickname",
                "min": 0,
                "max": "1",
                "type": [{"code": "Extension", "profile": [_EXT_URL]}],
            },
            {
                "id": "Patient.identifier",
                "path": "Patient.identifier",
                "min": 1,
                "max": "*",
                "slicing": {"discriminator": [{"type": "value", "path": "system"}], "rules": "closed"},
            },
            {
                "id": "Patient.identifier:A",
                "path": "Patient.identifier",
                "sliceName": "A",
                "min": 1,
                "max": "1",
            },
            {
                "id": "Patient.identifier:A.system",
                "path": "Patient.identifier.system",
                "min": 1,
                "max": "1",
                "fixedUri": "urn:a",
            },
            {"id": "Patient.identifier:A.value", "path": "Patient.identifier.value", "min": 1, "max": "1"},
            {
                "id": "Patient.identifier:B",
                "path": "Patient.identifier",
                "sliceName": "B",
                "min": 0,
                "max": "*",
            },
            {
                "id": "Patient.identifier:B.system",
                "path": "Patient.identifier.system",
                "min": 1,
                "max": "1",
                "fixedUri": "urn:b",
            },
            {
                "id": "Patient.identifier:B.use",
                "path": "Patient.identifier.use",
                "min": 0,
                "max": "1",
                "fixedCode": "secondary",
            },
            {
                "id": "Patient.maritalStatus",
                "path": "Patient.maritalStatus",
                "min": 0,
                "max": "1",
                "patternCodeableConcept": {"coding": [{"system": "urn:ms"}]},
            },
            {
                "id": "Patient.deceased[x]",
                "path": "Patient.deceased[x]",
                "min": 0,
                "max": "1",
                "type": [{"code": "boolean"}],
            },
            {"id": "Patient.birthDate", "path": "Patient.birthDate", "min": 0, "max": "0"},
        ]
    },
}


def tiny(**extra: Any) -> list[Issue]:
    resource = {"resourceType": "Patient", "identifier": [{"system": "urn:a", "value": "1"}], **extra}
    return check_snapshot(_TINY_PATIENT, resource, {_EXT_URL: _TINY_EXTENSION}.get)


def test_snapshot_checker_accepts_a_conforming_resource() -> None:
    assert tiny() == []
    assert (
        tiny(
            extension=[{"url": _EXT_URL, "valueString": "Kari"}, {"url": "urn:other", "valueInteger": 1}],
            maritalStatus={"coding": [{"system": "urn:ms", "code": "M"}], "text": "gift"},
            deceasedBoolean=False,
        )
        == []
    )


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ({"identifier": []}, "Patient.identifier"),  # min 1
        ({"identifier": [{"system": "urn:a"}]}, "Patient.identifier[0].value"),  # slice child min 1
        ({"identifier": [{"system": "urn:b"}]}, "Patient.identifier"),  # slice A min 1
        ({"identifier": [{"system": "urn:a", "value": "1"}, {"system": "urn:c"}]}, "Patient.identifier[1]"),
        (
            {"identifier": [{"system": "urn:a", "value": "1"}, {"system": "urn:b", "use": "official"}]},
            "Patient.identifier[1].use",
        ),  # fixed value
        ({"maritalStatus": {"coding": [{"system": "urn:other"}]}}, "Patient.maritalStatus"),  # pattern
        ({"deceasedDateTime": "2020-01-01"}, "Patient.deceasedDateTime"),  # choice type
        ({"birthDate": "2000-01-01"}, "Patient.birthDate"),  # max 0
        ({"extension": [{"url": _EXT_URL, "valueInteger": 1}]}, "Patient.extension[0].valueInteger"),
        ({"extension": [{"url": _EXT_URL}]}, "Patient.extension[0].value"),  # type profile: min 1
        ({"extension": [{"url": _EXT_URL, "valueString": "a"}] * 2}, "Patient.extension"),  # slice max 1
    ],
)
def test_snapshot_checker_finds(extra: dict[str, Any], where: str) -> None:
    if "identifier" in extra:
        resource = {"resourceType": "Patient", **extra}
        issues = check_snapshot(_TINY_PATIENT, resource, {_EXT_URL: _TINY_EXTENSION}.get)
    else:
        issues = tiny(**extra)
    assert where in expressions(issues), issues


def test_snapshot_checker_without_resolver_does_not_look_into_type_profiles() -> None:
    resource = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:a", "value": "1"}],
        "extension": [{"url": _EXT_URL, "valueInteger": 1}],
    }
    assert check_snapshot(_TINY_PATIENT, resource) == []


def test_snapshot_checker_refuses_the_wrong_type_and_a_missing_snapshot() -> None:
    assert expressions(check_snapshot(_TINY_PATIENT, {"resourceType": "Practitioner"})) == ["resourceType"]
    with pytest.raises(ValueError, match="snapshot"):
        check_snapshot(
            {"resourceType": "StructureDefinition", "type": "Patient"}, {"resourceType": "Patient"}
        )
