"""Tests for akson.fhir.validation: R4 schema validation, references and Norwegian person ids."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("akson") is None:  # src layout, package not installed into .venv
    sys.path.insert(0, str(Path(__file__).parents[2] / "src"))

from akson.fhir.outcome import Issue  # noqa: E402
from akson.fhir.validation import (  # noqa: E402
    MAX_DEPTH,
    MAX_ISSUES,
    RESOURCE_TYPES,
    to_fhirpath,
    validate,
)

EXAMPLES = Path(__file__).parents[1] / "data" / "r4-examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.json"))

FNR_OID = "urn:oid:2.16.578.1.12.4.1.4.1"
DNR_OID = "urn:oid:2.16.578.1.12.4.1.4.2"
VALID_FNR = "01912412306"  # synthetic (month + 80), valid check digits
VALID_DNR = "41912412383"


def load(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    return result


def patient(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": "p1", "active": True, **extra}


def expressions(issues: list[Issue]) -> list[str]:
    return [e for i in issues for e in i.expression]


def only(issues: list[Issue]) -> Issue:
    assert len(issues) == 1, issues
    return issues[0]


# ------------------------------------------------------------------ the official R4 examples


def test_all_examples_were_copied() -> None:
    assert len(EXAMPLE_FILES) == 706


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_official_example_is_valid(path: Path) -> None:
    resource = json.loads(path.read_text(encoding="utf-8"))
    assert validate(resource) == []
    assert validate(resource, expected_type=resource["resourceType"]) == []


def test_gingival_mass_no_break_space_is_a_valid_string() -> None:
    """The corpus notes this example "fails the JSON schema": its display holds U+00A0.

    FHIR's string regex `[ \\r\\n\\t\\S]+` is an XML Schema regex where \\s is only space, tab,
    CR and LF, so a no-break space is allowed; the JSON schema run with Unicode \\s would refuse
    it. validation.py restores the XML Schema meaning, so this example validates — and so does
    Norwegian text with a no-break space pasted from a word processor.
    """
    resource = load("DiagnosticReport-gingival-mass.json")
    assert "\u00a0" in resource["resultsInterpreter"][0]["display"]
    assert validate(resource) == []
    assert validate(patient(name=[{"text": "Kari\u00a0Nordmann"}])) == []


def test_whitespace_rules_still_apply_to_codes_and_uris() -> None:
    assert validate(patient(language="nb\u00a0NO")) == []  # not XML Schema whitespace
    issue = only(validate(patient(language="nb  NO")))
    assert issue.expression == ("Patient.language",)
    assert issue.code == "value"
    assert "code" in issue.diagnostics
    issue = only(validate(patient(implicitRules="http://a b")))
    assert issue.expression == ("Patient.implicitRules",)


def test_resource_types() -> None:
    assert len(RESOURCE_TYPES) == 146
    assert {"Patient", "Observation", "Bundle", "EffectEvidenceSynthesis"} <= RESOURCE_TYPES
    assert "Resource" not in RESOURCE_TYPES and "DomainResource" not in RESOURCE_TYPES
    assert {json.loads(p.read_text())["resourceType"] for p in EXAMPLE_FILES} <= RESOURCE_TYPES


# ---------------------------------------------------------------------- resource-level checks


@pytest.mark.parametrize("value", [[], "Patient", None, 42, [{"resourceType": "Patient"}]])
def test_non_object_input(value: object) -> None:
    issue = only(validate(value))
    assert issue.code == "structure"
    assert issue.severity == "error"


@pytest.mark.parametrize(
    ("resource", "fragment"),
    [
        ({}, "Missing resourceType"),
        ({"resourceType": 3}, "Missing resourceType"),
        ({"resourceType": "Patent"}, "Unknown resource type 'Patent'"),
        ({"resourceType": "patient"}, "Unknown resource type"),
        ({"resourceType": "DomainResource"}, "Unknown resource type"),
        ({"resourceType": "<script>"}, "(not a resource type name)"),
    ],
)
def test_unknown_or_missing_resource_type(resource: dict[str, Any], fragment: str) -> None:
    issue = only(validate(resource))
    assert issue.code == "invalid"
    assert issue.expression == ("resourceType",)
    assert fragment in issue.diagnostics
    assert "<script>" not in issue.diagnostics


def test_expected_type_mismatch() -> None:
    issue = only(validate(patient(), expected_type="Observation"))
    assert issue.code == "invalid"
    assert issue.expression == ("resourceType",)
    assert "Patient" in issue.diagnostics and "Observation" in issue.diagnostics
    assert validate(patient(), expected_type="Patient") == []


# -------------------------------------------------------------------------- schema errors


def test_wrong_type_for_a_field() -> None:
    issue = only(validate(patient(active="yes")))
    assert issue.code == "structure"
    assert issue.expression == ("Patient.active",)
    assert issue.diagnostics == "Patient.active must be a boolean, not a string"


def test_wrong_type_deep_in_an_array() -> None:
    issue = only(validate(patient(name=[{"family": "Nordmann", "given": ["Kari", 3]}])))
    assert issue.expression == ("Patient.name[0].given[1]",)
    assert issue.code == "structure"


def test_single_value_where_array_is_required() -> None:
    issue = only(validate(patient(name={"family": "Nordmann"})))
    assert issue.expression == ("Patient.name",)
    assert "must be an array, not an object" in issue.diagnostics


def test_unknown_element() -> None:
    issue = only(validate(patient(favouriteColour="blue")))
    assert issue.code == "structure"
    assert issue.expression == ("Patient.favouriteColour",)
    assert "Unknown element 'favouriteColour'" in issue.diagnostics


def test_unknown_element_nested() -> None:
    issues = validate(patient(name=[{"family": "N", "middle": "X"}]))
    assert expressions(issues) == ["Patient.name[0].middle"]


def test_missing_required_element() -> None:
    obs = {"resourceType": "Observation", "status": "final"}  # code is 1..1
    issue = only(validate(obs))
    assert issue.code == "required"
    assert issue.expression == ("Observation.code",)


def test_bad_code_is_a_value_error_listing_the_allowed_codes() -> None:
    issue = only(validate(patient(gender="mann")))
    assert issue.code == "value"
    assert issue.expression == ("Patient.gender",)
    assert "male, female, other, unknown" in issue.diagnostics
    assert "mann" not in issue.diagnostics


def test_bad_date_does_not_echo_the_value() -> None:
    issue = only(validate(patient(birthDate="1990-13-01")))
    assert issue.code == "value"
    assert issue.expression == ("Patient.birthDate",)
    assert issue.diagnostics == "Patient.birthDate is not a valid FHIR date"
    assert "1990" not in issue.diagnostics


def test_empty_string_is_refused() -> None:
    issue = only(validate(patient(name=[{"family": ""}])))
    assert issue.expression == ("Patient.name[0].family",)
    assert "empty" in issue.diagnostics


def test_primitive_extension_path_uses_the_fhirpath_name() -> None:
    resource = patient(
        name=[
            {"given": ["Kari"], "_given": [{"extension": [{"url": "http://x", "valueString": 1}]}]}
        ]
    )
    issue = only(validate(resource))
    assert issue.expression == ("Patient.name[0].given[0].extension[0].valueString",)


@pytest.mark.parametrize("bad_id", ["a b", "x" * 65, "", "å", "p/1"])
def test_bad_id(bad_id: str) -> None:
    issue = only(validate(patient(id=bad_id)))
    assert issue.code == "value"
    assert issue.expression == ("Patient.id",)


@pytest.mark.parametrize("good_id", ["a", "x" * 64, "A-b.9", "123"])
def test_good_id(good_id: str) -> None:
    assert validate(patient(id=good_id)) == []


# ---------------------------------------------------------- contained and bundled resources


def test_contained_resource_is_validated_against_its_own_type() -> None:
    resource = patient(
        contained=[{"resourceType": "Practitioner", "id": "gp", "active": "no"}],
        generalPractitioner=[{"reference": "#gp"}],
    )
    issue = only(validate(resource))
    assert issue.expression == ("Patient.contained[0].active",)
    assert "must be a boolean" in issue.diagnostics


def test_contained_resource_with_unknown_type() -> None:
    issue = only(validate(patient(contained=[{"resourceType": "Nope"}])))
    assert issue.expression == ("Patient.contained[0].resourceType",)
    assert issue.code == "value"


def test_bundle_entry_errors_name_the_entry() -> None:
    bundle = load("Bundle-bundle-transaction.json")
    bundle["entry"][0]["resource"]["birthDate"] = "yesterday"
    issues = validate(bundle)
    assert expressions(issues) == ["Bundle.entry[0].resource.birthDate"]


def test_parameters_nested_resource_is_validated() -> None:
    params = {
        "resourceType": "Parameters",
        "parameter": [{"name": "p", "part": [{"name": "r", "resource": patient(active=1)}]}],
    }
    issue = only(validate(params))
    assert issue.expression == ("Parameters.parameter[0].part[0].resource.active",)


# ------------------------------------------------------------------------------ references


@pytest.mark.parametrize(
    "ref",
    [
        "Organization/1",
        "Organization/a.b-C",
        "Organization/1/_history/2",
        "#org",
        "#",
        "http://example.org/fhir/Organization/1",
        "https://fhir.example.no/x",
        "urn:uuid:9d6f8a4e-0e7b-4a41-9c1a-2b3c4d5e6f70",
        "urn:oid:2.16.578.1.12.4.1.4.101",
    ],
)
def test_good_references(ref: str) -> None:
    assert validate(patient(managingOrganization={"reference": ref})) == []


@pytest.mark.parametrize(
    ("ref", "fragment"),
    [
        ("Organisation/1", "'Organisation', which is not an R4 resource type"),
        ("Organization/a b", "invalid id"),
        ("Organization/" + "x" * 65, "invalid id"),
        ("Organization/", "invalid id"),
        ("Organization/1/_history/a b", "invalid version id"),
        ("Organization", "is not a valid reference"),
        ("foo bar", "is not a valid reference"),
        ("ftp://example.org/x", "is not a valid reference"),
        ("urn:uuid:not-a-uuid", "is not a valid reference"),
        ("urn:oid:2.16.0578", "is not a valid reference"),
        ("Organization?identifier=x|1", "is not a valid reference"),
        ("#a b", "is not a valid reference"),
    ],
)
def test_bad_references(ref: str, fragment: str) -> None:
    issue = only(validate(patient(managingOrganization={"reference": ref})))
    assert issue.code == "value"
    assert issue.expression == ("Patient.managingOrganization.reference",)
    assert fragment in issue.diagnostics


def test_references_are_found_everywhere() -> None:
    resource = patient(
        contained=[{"resourceType": "Organization", "id": "o", "partOf": {"reference": "x y"}}],
        extension=[{"url": "http://x", "valueReference": {"reference": "Bogus/1"}}],
        link=[{"other": {"reference": "Patient/2"}, "type": "seealso"}],
        identifier=[{"assigner": {"reference": "Organization/1 "}}],
    )
    assert sorted(expressions(validate(resource))) == [
        "Patient.contained[0].partOf.reference",
        "Patient.extension[0].valueReference.reference",
        "Patient.identifier[0].assigner.reference",
    ]


def test_references_in_extensions_deep_inside_other_elements_are_found() -> None:
    """Without extensions the walk skips Codings, Quantities and Periods (nothing in them is
    a Reference); an extension anywhere — here on a Coding and on a primitive — makes it look
    everywhere."""
    bad = {"url": "http://x", "valueReference": {"reference": "Bogus/1"}}
    obs = {"resourceType": "Observation", "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "1", "extension": [bad]}]},
           "_status": {"extension": [bad]},
           "valueQuantity": {"value": 1, "extension": [bad]},
           "subject": {"reference": "x y"}}
    assert sorted(expressions(validate(obs))) == [
        "Observation.code.coding[0].extension[0].valueReference.reference",
        "Observation.status.extension[0].valueReference.reference",
        "Observation.subject.reference",
        "Observation.valueQuantity.extension[0].valueReference.reference",
    ]
    plain = {k: v for k, v in obs.items() if k != "_status"}
    plain["code"] = {"coding": [{"system": "http://loinc.org", "code": "1"}]}
    plain["valueQuantity"] = {"value": 1}
    assert expressions(validate(plain)) == ["Observation.subject.reference"]


def test_uri_elements_named_reference_are_not_references() -> None:
    # DetectedIssue.reference and Expression.reference are uris, not Reference.reference.
    issue = {
        "resourceType": "DetectedIssue",
        "status": "final",
        "reference": "http://example.org/guidance",
    }
    assert validate(issue) == []


def test_conditional_references_are_allowed_in_transactions_only() -> None:
    entry = {
        "resource": {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": "Patient?identifier=urn:oid:2.16.578.1.12.4.1.4.1|x"},
        },
        "request": {"method": "POST", "url": "Observation"},
    }
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
    assert validate(transaction) == []
    collection = {"resourceType": "Bundle", "type": "collection", "entry": [entry]}
    assert expressions(validate(collection)) == ["Bundle.entry[0].resource.subject.reference"]


# -------------------------------------------------------------------- Norwegian person ids


@pytest.mark.parametrize("system", [FNR_OID, "http://hl7.no/fhir/NamingSystem/FNR", DNR_OID])
def test_valid_person_ids(system: str) -> None:
    value = VALID_DNR if system == DNR_OID else VALID_FNR
    assert validate(patient(identifier=[{"system": system, "value": value}])) == []


def test_invalid_fnr_check_digit_points_at_the_value_and_hides_it() -> None:
    bad = VALID_FNR[:-1] + str((int(VALID_FNR[-1]) + 1) % 10)
    resource = patient(
        identifier=[{"system": "http://x", "value": "1"}, {"system": FNR_OID, "value": bad}]
    )
    issue = only(validate(resource))
    assert issue.code == "value"
    assert issue.expression == ("Patient.identifier[1].value",)
    assert issue.diagnostics.startswith("Fødselsnummer in Patient.identifier[1] has an invalid")
    assert bad not in issue.diagnostics and bad[:6] not in issue.diagnostics


def test_invalid_d_number_wrong_length() -> None:
    issue = only(validate(patient(identifier=[{"system": DNR_OID, "value": "4191241238"}])))
    assert issue.expression == ("Patient.identifier[0].value",)
    assert issue.diagnostics == "D-nummer in Patient.identifier[0] is not 11 digits"


def test_person_ids_are_checked_in_nested_identifiers() -> None:
    resource = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"identifier": {"system": FNR_OID, "value": "12345678901"}},
        "contained": [
            {"resourceType": "Patient", "identifier": [{"system": FNR_OID, "value": "00000000000"}]}
        ],
    }
    assert expressions(validate(resource)) == [
        "Observation.subject.identifier.value",
        "Observation.contained[0].identifier[0].value",
    ]


def test_other_systems_are_not_checked() -> None:
    resource = patient(identifier=[{"system": "urn:oid:2.16.578.1.12.4.1.4.4", "value": "1"}])
    assert validate(resource) == []


# ------------------------------------------------------------------------ limits and safety


def test_issue_count_is_limited() -> None:
    resource = patient(**{f"unknown{i}": i for i in range(50)})
    issues = validate(resource)
    assert len(issues) == MAX_ISSUES + 1
    assert all(i.severity == "error" for i in issues[:MAX_ISSUES])
    assert issues[-1].severity == "information"


def nested_extension(levels: int) -> dict[str, Any]:
    root: dict[str, Any] = {"url": "http://x"}
    node = root
    for _ in range(levels):
        child: dict[str, Any] = {"url": "http://x"}
        node["extension"] = [child]
        node = child
    return root


def test_reasonable_nesting_is_fine() -> None:
    assert validate(patient(extension=[nested_extension(100)])) == []


@pytest.mark.parametrize("levels", [MAX_DEPTH, 100_000])
def test_deep_nesting_is_an_issue_not_a_crash(levels: int) -> None:
    issue = only(validate(patient(extension=[nested_extension(levels)])))
    assert issue.code == "too-costly"
    assert "nested" in issue.diagnostics


def test_cycles_and_non_json_values_are_issues() -> None:
    cyclic = patient()
    cyclic["extension"] = [cyclic]
    assert only(validate(cyclic)).code in ("too-costly", "structure")
    assert only(validate(patient(extension={1, 2}))).code == "structure"
    assert only(validate({"resourceType": "Patient", 1: 2})).code == "structure"


def test_input_is_not_modified() -> None:
    resource = load("Patient-example.json")
    before = copy.deepcopy(resource)
    validate(resource)
    assert resource == before


def test_to_fhirpath() -> None:
    assert to_fhirpath("Patient", ()) == "Patient"
    assert to_fhirpath("Patient", ("name", 0, "_given", 1)) == "Patient.name[0].given[1]"
    assert to_fhirpath("Patient", ("a b",)) == "Patient.`a b`"


def test_typical_resources_validate_well_under_a_millisecond() -> None:
    for name in ("Patient-example.json", "Observation-example.json"):
        resource = load(name)
        validate(resource)  # compile this type's validator
        runs = 200
        start = time.perf_counter()
        for _ in range(runs):
            validate(resource)
        per_call = (time.perf_counter() - start) / runs
        # Generous bound so a loaded CI machine does not flake; measured ≈ 0.05-0.07 ms.
        assert per_call < 0.001, f"{name}: {per_call * 1e3:.3f} ms"
