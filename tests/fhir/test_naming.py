"""Tests for akson.fhir.naming (systems and code system URLs) and their use in validation."""

from __future__ import annotations

import datetime
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("akson") is None:  # src layout, package not installed into .venv
    sys.path.insert(0, str(Path(__file__).parents[2] / "src"))

from akson.fhir import naming  # noqa: E402
from akson.fhir.identifiers import PersonIdKind, make_fnr  # noqa: E402
from akson.fhir.validation import FNR_SYSTEMS, validate  # noqa: E402

# DOMAIN.md §1's table (and §4, §5, §7 for code systems), copied by hand: a typo in naming.py
# would otherwise silently create a new, unmatched identifier system.
EXPECTED = {
    "FNR_SYSTEM": "urn:oid:2.16.578.1.12.4.1.4.1",
    "FNR_SYSTEM_URL": "http://hl7.no/fhir/NamingSystem/FNR",
    "DNR_SYSTEM": "urn:oid:2.16.578.1.12.4.1.4.2",
    "FHN_SYSTEM": "urn:oid:2.16.578.1.12.4.1.4.3",
    "HPR_SYSTEM": "urn:oid:2.16.578.1.12.4.1.4.4",
    "DUF_SYSTEM": "urn:oid:2.16.578.1.12.4.1.4.5",
    "ORGNR_SYSTEM": "urn:oid:2.16.578.1.12.4.1.4.101",
    "RESH_SYSTEM": "urn:oid:2.16.578.1.12.4.1.4.102",
    "HER_ID_SYSTEM": "urn:oid:2.16.578.1.12.4.1.2",
    "HNR_SYSTEM": "HNR",
    "HNR_TYPE_SYSTEM": "urn:oid:2.16.578.1.12.4.1.1.8327",
    "HNR_TYPE_CODE": "HNR",
    "KOMMUNENR_SYSTEM": "https://register.geonorge.no/sosi-kodelister/kommunenummer",
    "KOMMUNENR_OID": "urn:oid:2.16.578.1.12.4.1.1.3402",
    "HELSEPERSONELLKATEGORI_SYSTEM": "urn:oid:2.16.578.1.12.4.1.1.9060",
    "RESTRICTION_CODE_SYSTEM": "http://helsedir.no/fhir/CodeSystem/no-kodeverk-9603",
    "ICPC2_SYSTEM": "http://hl7.org/fhir/sid/icpc-2",
    "ICD10_SYSTEM": "http://hl7.org/fhir/sid/icd-10-no",
    "ATC_SYSTEM": "urn:oid:2.16.578.1.12.4.1.1.7180",
    "NLK_SYSTEM": "http://helsedir.no/fhir/CodeSystem/no-kodeverk-7280-nlk",
    "PARENTAL_RESPONSIBILITY_SYSTEM":
        "http://hl7.no/fhir/CodeSystem/no-basis-parental-responsibility",
}

OID = re.compile(r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+")
URL = re.compile(r"https?://[^\s#?]+")


def test_constants_match_domain_md() -> None:
    assert {name: getattr(naming, name) for name in EXPECTED} == EXPECTED


def test_every_exported_string_is_checked_and_well_formed() -> None:
    strings = {n for n in naming.__all__ if isinstance(getattr(naming, n), str)}
    assert strings == set(EXPECTED)
    for name in strings:
        value = getattr(naming, name)
        if name not in ("HNR_SYSTEM", "HNR_TYPE_CODE"):
            assert OID.fullmatch(value) or URL.fullmatch(value), name
    systems = [getattr(naming, n) for n in strings if n != "HNR_TYPE_CODE"]
    assert len(systems) == len(set(systems))  # no two names for one system


def test_each_constant_has_a_comment() -> None:
    source = Path(naming.__file__).read_text(encoding="utf-8").splitlines()
    for name in EXPECTED:
        start = next(i for i, line in enumerate(source) if line.startswith(f"{name}: Final"))
        statement = source[start : start + 3]  # a wrapped assignment keeps its comment inside
        assert any("#" in line for line in statement), name


def test_person_id_systems() -> None:
    assert dict(naming.PERSON_ID_SYSTEMS) == {
        naming.FNR_SYSTEM: PersonIdKind.FNR,
        naming.FNR_SYSTEM_URL: PersonIdKind.FNR,
        naming.DNR_SYSTEM: PersonIdKind.DNR,
        naming.FHN_SYSTEM: PersonIdKind.FHN,
        naming.DUF_SYSTEM: PersonIdKind.DUF,
        naming.HNR_SYSTEM: PersonIdKind.HNR,
    }
    # HER-id is an address, HPR/orgnr/RESH identify professionals and organisations.
    for other in (naming.HER_ID_SYSTEM, naming.HPR_SYSTEM, naming.ORGNR_SYSTEM, naming.RESH_SYSTEM):
        assert other not in naming.PERSON_ID_SYSTEMS
    with pytest.raises(TypeError):
        naming.PERSON_ID_SYSTEMS["x"] = PersonIdKind.FNR  # type: ignore[index]


def test_validation_uses_the_same_systems() -> None:
    assert set(FNR_SYSTEMS) == {naming.FNR_SYSTEM, naming.FNR_SYSTEM_URL, naming.DNR_SYSTEM}


# ------------------------------------------------------- identifiers checked by validation


def org(system: str, value: Any) -> dict[str, Any]:
    return {"resourceType": "Organization", "identifier": [{"system": system, "value": value}]}


FHN_OK = "93915000868"
CASES = [
    # system, good values, (bad value, expected diagnostic)
    (naming.FHN_SYSTEM, [FHN_OK, "86360837787"],
     [("93915000869", "Felles hjelpenummer in Organization.identifier[0] does not start with 8 "
                      "or 9 or has an invalid check digit"),
      ("15078543296", "Felles hjelpenummer in Organization.identifier[0] does not start with 8 "
                      "or 9 or has an invalid check digit"),
      ("9391500086", "Felles hjelpenummer in Organization.identifier[0] is not 11 digits")]),
    (naming.HPR_SYSTEM, ["9144900", "1"],
     [("09144900", "HPR-nummer in Organization.identifier[0] is not a number of 1-9 digits "
                   "without leading zeros"),
      ("91449OO", "HPR-nummer in Organization.identifier[0] is not a number of 1-9 digits "
                  "without leading zeros")]),
    (naming.ORGNR_SYSTEM, ["974760673", "923609016"],
     [("974760674", "Organisasjonsnummer in Organization.identifier[0] has an invalid check "
                    "digit"),
      ("97476067", "Organisasjonsnummer in Organization.identifier[0] is not 9 digits")]),
    (naming.HER_ID_SYSTEM, ["122612", "8142987"],
     [("0", "HER-id in Organization.identifier[0] is not a number of 1-9 digits without "
            "leading zeros"),
      ("1226120000", "HER-id in Organization.identifier[0] is not a number of 1-9 digits "
                     "without leading zeros")]),
]


@pytest.mark.parametrize(("system", "good", "bad"), CASES, ids=lambda c: str(c)[:40])
def test_validation_checks_identifier_values(system: str, good: list[str], bad: list) -> None:
    for value in good:
        assert validate(org(system, value)) == [], value
    for value, diagnostics in bad:
        issues = validate(org(system, value))
        assert len(issues) == 1, (value, issues)
        assert issues[0].diagnostics == diagnostics
        assert issues[0].expression == ("Organization.identifier[0].value",)
        if len(value) > 3:  # ("0" is in "identifier[0]")
            assert value not in issues[0].diagnostics


def test_validation_still_checks_fnr_and_ignores_duf_resh_hnr() -> None:
    fnr = make_fnr(datetime.date(1985, 7, 15), 432)
    assert fnr and validate(org(naming.FNR_SYSTEM, fnr)) == []
    assert validate(org(naming.FNR_SYSTEM, fnr[:-1] + str((int(fnr[-1]) + 1) % 10)))
    for system in (naming.DUF_SYSTEM, naming.RESH_SYSTEM, naming.HNR_SYSTEM):
        assert validate(org(system, "anything")) == [], system


def test_non_string_values_are_left_to_the_schema() -> None:
    issues = validate(org(naming.ORGNR_SYSTEM, 974760673))
    assert issues and all("Organisasjonsnummer" not in i.diagnostics for i in issues)
