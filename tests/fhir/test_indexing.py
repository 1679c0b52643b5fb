"""Tests for akson.fhir.indexing: rows per parameter type, references, compartment, examples."""

from __future__ import annotations

import json
import timeit
from pathlib import Path
from typing import Any

import pytest

from akson.fhir.dates import MAX_US, MIN_US, date_range, period_range
from akson.fhir.indexing import (
    CANONICAL_SYSTEM,
    IndexRows,
    compartment,
    extract,
    patient_compartment,
    split_reference,
)
from akson.fhir.searchparams import SearchParamRegistry

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "r4-examples"

PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "meta": {
        "tag": [{"system": "http://akson.no/tag", "code": "demo"}],
        "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                      "code": "R"}],
        "profile": ["http://hl7.no/fhir/StructureDefinition/no-basis-Patient"],
        "source": "http://akson.no/source#1",
        "lastUpdated": "2024-03-05T09:00:00Z",
    },
    "identifier": [{
        "system": "urn:oid:2.16.578.1.12.4.1.4.1",
        "value": "13031353453",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                             "code": "NI"}]},
    }],
    "active": True,
    "name": [{"family": "Søreng", "given": ["Åse", "Marie"], "prefix": ["Dr."],
              "text": "Åse Marie Søreng"},
             {"family": "Søreng"}],
    "telecom": [{"system": "phone", "value": "+4799999999", "use": "mobile"},
                {"system": "email", "value": "ase@example.no"}],
    "gender": "female",
    "birthDate": "1980-02-29",
    "deceasedBoolean": False,
    "address": [{"line": ["Storgata 1"], "city": "Tromsø", "postalCode": "9008",
                 "country": "NO", "district": "Troms"}],
    "generalPractitioner": [{"reference": "Practitioner/gp1"}],
    "managingOrganization": {"reference": "https://fhir.example.no/Organization/o1"},
    "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "nb"}]}}],
}


def param_rows(rows: list, code: str) -> list:
    return [r[1:] for r in rows if r[0] == code]


def test_patient_tokens_strings_dates_refs() -> None:
    rows = extract(PATIENT)
    assert param_rows(rows.tokens, "identifier") == [
        ("urn:oid:2.16.578.1.12.4.1.4.1", "13031353453")]
    assert rows.identifier_types == [
        ("identifier", "http://terminology.hl7.org/CodeSystem/v2-0203", "NI", "13031353453")
    ]
    assert param_rows(rows.tokens, "gender") == [(None, "female")]
    assert param_rows(rows.tokens, "active") == [(None, "true")]
    assert param_rows(rows.tokens, "deceased") == [(None, "false")]
    assert param_rows(rows.tokens, "phone") == [("phone", "+4799999999")]
    assert param_rows(rows.tokens, "email") == [("email", "ase@example.no")]
    assert set(param_rows(rows.tokens, "telecom")) == {
        ("phone", "+4799999999"), ("email", "ase@example.no")}
    assert param_rows(rows.tokens, "language") == [("urn:ietf:bcp:47", "nb")]
    assert param_rows(rows.tokens, "_tag") == [("http://akson.no/tag", "demo")]
    assert param_rows(rows.tokens, "_security") == [
        ("http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "R")]
    # family appears twice in the resource but once in the index
    assert param_rows(rows.strings, "family") == [("soreng", "Søreng")]
    assert param_rows(rows.strings, "given") == [("ase", "Åse"), ("marie", "Marie")]
    assert set(param_rows(rows.strings, "name")) >= {
        ("soreng", "Søreng"), ("ase", "Åse"), ("dr.", "Dr."),
        ("ase marie soreng", "Åse Marie Søreng")}
    assert set(param_rows(rows.strings, "address")) == {
        ("storgata 1", "Storgata 1"), ("tromso", "Tromsø"), ("9008", "9008"), ("no", "NO"),
        ("troms", "Troms")}
    assert param_rows(rows.strings, "address-city") == [("tromso", "Tromsø")]
    assert param_rows(rows.dates, "birthdate") == [date_range("1980-02-29")]
    assert param_rows(rows.references, "general-practitioner") == [("Practitioner", "gp1", None)]
    assert param_rows(rows.references, "organization") == [
        ("Organization", "o1", "https://fhir.example.no/Organization/o1")]
    assert set(rows.uris) == {
        ("_profile", "http://hl7.no/fhir/StructureDefinition/no-basis-Patient"),
        ("_source", "http://akson.no/source#1")}
    # _id and _lastUpdated are resource columns, not index rows
    assert not [r for r in rows.tokens if r[0] == "_id"]
    assert not [r for r in rows.dates if r[0] == "_lastUpdated"]
    assert patient_compartment(PATIENT, rows) == "p1"


def test_deceased_datetime() -> None:
    rows = extract({"resourceType": "Patient", "deceasedDateTime": "2020-05-01T10:00:00+02:00"})
    assert param_rows(rows.tokens, "deceased") == [(None, "true")]
    assert param_rows(rows.dates, "death-date") == [date_range("2020-05-01T10:00:00+02:00")]


OBSERVATION = {
    "resourceType": "Observation",
    "status": "final",
    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                              "code": "laboratory"}]}],
    "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"},
                        {"system": "http://snomed.info/sct", "code": "22569008"}],
             "text": "Glucose"},
    "subject": {"reference": "Patient/p1/_history/3"},
    "encounter": {"reference": "#enc"},
    "performer": [{"reference": "urn:uuid:6a4f9e6c-1f6c-4b0e-9d1c-3f2a1b8c9d0e"},
                  {"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.4", "value": "9144889"}}],
    "effectivePeriod": {"start": "2024-03-05T08:00:00+01:00"},
    "valueQuantity": {"value": 6.3, "unit": "mmol/L", "system": "http://unitsofmeasure.org",
                      "code": "mmol/L"},
    "component": [
        {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
         "valueQuantity": {"value": 120, "unit": "mmHg"}},
        {"code": {"text": "only text"}, "valueString": "Mørk"},
        {"code": {"coding": [{"code": "x"}]}, "valueCodeableConcept": {
            "coding": [{"system": "http://snomed.info/sct", "code": "371244009"}], "text": "Blå"}},
    ],
}


def test_observation_rows() -> None:
    rows = extract(OBSERVATION)
    assert param_rows(rows.tokens, "code") == [
        ("http://loinc.org", "2345-7"), ("http://snomed.info/sct", "22569008")]
    assert param_rows(rows.tokens, "status") == [(None, "final")]
    assert ("http://loinc.org", "8480-6") in param_rows(rows.tokens, "component-code")
    assert (None, "x") in param_rows(rows.tokens, "component-code")
    assert param_rows(rows.tokens, "component-value-concept") == [
        ("http://snomed.info/sct", "371244009")]
    assert param_rows(rows.dates, "date") == [
        (date_range("2024-03-05T08:00:00+01:00")[0], MAX_US)]
    # history stripped; #contained and identifier-only references skipped; urn:uuid kept as url
    assert param_rows(rows.references, "subject") == [("Patient", "p1", None)]
    assert param_rows(rows.references, "patient") == [("Patient", "p1", None)]
    assert param_rows(rows.references, "encounter") == []
    assert param_rows(rows.references, "performer") == [
        (None, None, "urn:uuid:6a4f9e6c-1f6c-4b0e-9d1c-3f2a1b8c9d0e")]
    # UCUM quantities also get a row in canonical form (search.html#quantity)
    assert param_rows(rows.quantities, "value-quantity") == [
        (6.3, "http://unitsofmeasure.org", "mmol/L"), (6.3, CANONICAL_SYSTEM, "m-3.mol")]
    # no system: the unit doubles as code
    assert (120.0, None, "mmHg") in param_rows(rows.quantities, "component-value-quantity")
    assert param_rows(rows.strings, "value-string") == []  # component values are not value-string
    assert patient_compartment(OBSERVATION, rows) == "p1"


def test_observation_value_string_and_concept_text() -> None:
    rows = extract({"resourceType": "Observation", "valueCodeableConcept": {"text": "Blå"}})
    assert param_rows(rows.strings, "value-string") == [("bla", "Blå")]
    rows = extract({"resourceType": "Observation", "valueString": "Mørk"})
    assert param_rows(rows.strings, "value-string") == [("mork", "Mørk")]


def test_date_shapes_timing_period_and_bad_values() -> None:
    req = {
        "resourceType": "MedicationRequest",
        "authoredOn": "2024-01-02",
        "dosageInstruction": [{"timing": {"event": ["2024-01-03", "2024-01-04T10:00:00Z"]}}],
    }
    rows = extract(req)
    assert param_rows(rows.dates, "authoredon") == [date_range("2024-01-02")]
    # MedicationRequest `date` is dosageInstruction.timing.event
    assert set(param_rows(rows.dates, "date")) == {
        date_range("2024-01-03"), date_range("2024-01-04T10:00:00Z")}
    enc = {"resourceType": "Encounter", "period": {"end": "2024-01-05"}}
    assert param_rows(extract(enc).dates, "date") == [period_range(None, "2024-01-05")]
    assert param_rows(extract(enc).dates, "date")[0][0] == MIN_US
    # A reversed period (invalid, per-1) is indexed as its span: low ≤ high in every row, which
    # the search compiler's bounds for `eq` and `eb` rely on.
    back = {"resourceType": "Encounter", "period": {"start": "2024-05-01", "end": "2024-01-01"}}
    assert param_rows(extract(back).dates, "date") == [period_range("2024-01-01", "2024-05-01")]
    # A malformed date is skipped (validation refuses it earlier), never raised here.
    assert extract({"resourceType": "Patient", "birthDate": "1980-13-45"}).dates == []


def test_quantity_money_and_range() -> None:
    item = {"resourceType": "ChargeItem", "priceOverride": {"value": 250, "currency": "NOK"},
            "quantity": {"value": 2}}
    rows = extract(item)
    assert param_rows(rows.quantities, "price-override") == [
        (250.0, "urn:iso:std:iso:4217", "NOK")]
    assert param_rows(rows.quantities, "quantity") == [(2.0, None, None)]
    cond = {"resourceType": "Condition", "onsetRange": {
        "low": {"value": 5, "unit": "a"}, "high": {"value": 10, "unit": "a"}}}
    assert param_rows(extract(cond).quantities, "onset-age") == [
        (5.0, None, "a"), (10.0, None, "a")]


def test_numbers_and_uris() -> None:
    risk = {"resourceType": "RiskAssessment", "prediction": [
        {"probabilityDecimal": 0.25}, {"probabilityRange": {"low": {"value": 0.1}}}]}
    assert param_rows(extract(risk).numbers, "probability") == [(0.25,), (0.1,)]
    vs = {"resourceType": "ValueSet", "url": "http://akson.no/ValueSet/x", "status": "active"}
    rows = extract(vs)
    assert param_rows(rows.uris, "url") == [("http://akson.no/ValueSet/x",)]


def test_canonical_references_and_bundle_composition() -> None:
    plan = {"resourceType": "PlanDefinition", "relatedArtifact": [
        {"type": "composed-of", "resource": "http://hl7.org/fhir/Library/lib|1.0"},
        {"type": "depends-on", "resource": "http://hl7.org/fhir/Library/dep"}],
        "library": ["http://hl7.org/fhir/Library/main"]}
    rows = extract(plan)
    assert param_rows(rows.references, "composed-of") == [
        ("Library", "lib", "http://hl7.org/fhir/Library/lib|1.0")]
    assert param_rows(rows.references, "depends-on") == [
        ("Library", "dep", "http://hl7.org/fhir/Library/dep"),
        ("Library", "main", "http://hl7.org/fhir/Library/main")]
    bundle = {"resourceType": "Bundle", "type": "document",
              "entry": [{"resource": {"resourceType": "Composition", "id": "c1"}}]}
    assert param_rows(extract(bundle).references, "composition") == [("Composition", "c1", None)]


@pytest.mark.parametrize(
    ("ref", "parts"),
    [
        ("Patient/123", ("Patient", "123", None)),
        ("Patient/123/_history/2", ("Patient", "123", None)),
        ("https://x.no/fhir/Patient/123", ("Patient", "123", "https://x.no/fhir/Patient/123")),
        ("urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0",
         (None, None, "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0")),
        ("http://loinc.org", (None, None, "http://loinc.org")),
        ("#contained", None),
        ("", None),
    ],
)
def test_split_reference(ref: str, parts: tuple | None) -> None:
    assert split_reference(ref) == parts


def test_patient_compartment_rules() -> None:
    def comp(res: dict) -> str | None:
        whole = patient_compartment(res, extract(res))
        assert compartment(res) == whole  # the gate's shortcut agrees with the store's rows
        return whole

    assert comp({"resourceType": "Condition", "subject": {"reference": "Patient/a"}}) == "a"
    assert comp({"resourceType": "Condition", "subject": {"reference": "Group/g"}}) is None
    assert comp({"resourceType": "AllergyIntolerance",
                 "patient": {"reference": "Patient/b"}}) == "b"
    assert comp({"resourceType": "Encounter", "subject": {"reference": "Patient/c"}}) == "c"
    assert comp({"resourceType": "Appointment", "participant": [
        {"actor": {"reference": "Practitioner/d"}},
        {"actor": {"reference": "Patient/e"}}]}) == "e"
    assert comp({"resourceType": "Coverage", "beneficiary": {"reference": "Patient/f"}}) == "f"
    # absolute references to a patient elsewhere are not a record here
    assert comp({"resourceType": "Condition",
                 "subject": {"reference": "https://other.no/fhir/Patient/x"}}) is None
    assert comp({"resourceType": "Group",
                 "member": [{"entity": {"reference": "Patient/a"}}]}) is None
    assert comp({"resourceType": "Organization", "name": "x"}) is None
    assert comp({"resourceType": "Patient"}) is None


def test_registry_argument_and_runtime_param() -> None:
    reg = SearchParamRegistry.default().copy()
    reg.add({
        "resourceType": "SearchParameter", "code": "mellomnavn", "base": ["Patient"],
        "type": "string", "url": "http://hl7.no/fhir/SearchParameter/akson-test-mellomnavn",
        "expression": "Patient.name.extension('http://hl7.no/fhir/StructureDefinition/"
                      "no-basis-middlename').value.as(string)",
    })
    patient = {"resourceType": "Patient", "name": [{"family": "Øyen", "extension": [
        {"url": "http://hl7.no/fhir/StructureDefinition/no-basis-middlename",
         "valueString": "Ødegård"}]}]}
    assert param_rows(extract(patient, reg).strings, "mellomnavn") == [("odegard", "Ødegård")]
    assert param_rows(extract(patient).strings, "mellomnavn") == []


def test_non_resources_yield_no_rows() -> None:
    assert extract({}) == IndexRows()
    assert extract({"resourceType": "NotAType", "id": "x"}) == IndexRows()


def _examples() -> list[Path]:
    if not EXAMPLES.is_dir():
        return []
    return sorted(EXAMPLES.glob("*.json"))


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason=f"R4 examples not found at {EXAMPLES}")
def test_all_r4_examples_extract_without_error() -> None:
    files = _examples()
    assert len(files) >= 700
    with_rows = 0
    for path in files:
        resource = json.loads(path.read_text(encoding="utf-8"))
        rows = extract(resource)
        patient_compartment(resource, rows)
        for lst in vars(rows).values():
            assert len(lst) == len(set(lst)), path.name  # deduplicated
        with_rows += any(vars(rows).values())
    assert with_rows >= len(files) * 0.95


def _load(name: str) -> dict:
    path = EXAMPLES / name
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return json.loads(path.read_text(encoding="utf-8"))


def test_patient_example_spot_checks() -> None:
    resource = _load("Patient-example.json")
    rows = extract(resource)
    assert ("chalmers", "Chalmers") in param_rows(rows.strings, "family")
    assert ("urn:oid:1.2.36.146.595.217.0.1", "12345") in param_rows(rows.tokens, "identifier")
    assert param_rows(rows.tokens, "gender") == [(None, "male")]
    assert param_rows(rows.dates, "birthdate") == [date_range("1974-12-25")]
    assert patient_compartment(resource, rows) == "example"


def test_observation_example_spot_checks() -> None:
    resource = _load("Observation-example.json")
    rows = extract(resource)
    assert ("http://loinc.org", "29463-7") in param_rows(rows.tokens, "code")
    assert param_rows(rows.references, "subject") == [("Patient", "example", None)]
    assert param_rows(rows.dates, "date") == [date_range(resource["effectiveDateTime"])]
    assert param_rows(rows.quantities, "value-quantity") == [
        (185.0, "http://unitsofmeasure.org", "[lb_av]"), (83914.58845, CANONICAL_SYSTEM, "g")]
    assert patient_compartment(resource, rows) == "example"


def test_extract_is_fast_after_warm_up() -> None:
    # Not a benchmark: a generous bound that catches accidental per-call FHIRPath parsing
    # (which costs milliseconds), while staying far from flaky on a loaded machine.
    extract(PATIENT)
    seconds = min(timeit.repeat(lambda: extract(PATIENT), number=200, repeat=3)) / 200
    assert seconds < 0.001


_ODD_VALUES: list = [None, 0, 1.5, True, "x", "", [], {}, [{}], ["a", 1], {"value": "1"},
                     {"coding": "x"}, {"start": 5}, {"event": 3, "repeat": []}, {"low": "a"},
                     {"system": [], "value": "v", "type": {"coding": 3}}, {"reference": 1},
                     {"coding": [{"system": 1, "code": []}]}, {"value": 1, "system": {}}]


def _scramble(node: object, seed: list[int]) -> object:
    """Replace every 7th JSON value by an odd one, deterministically (schema-invalid shapes)."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            seed[0] += 1
            if k != "resourceType" and seed[0] % 7 == 0:
                out[k] = _ODD_VALUES[seed[0] % len(_ODD_VALUES)]
            else:
                out[k] = _scramble(v, seed)
        return out
    if isinstance(node, list):
        return [_scramble(v, seed) for v in node]
    return node


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason=f"R4 examples not found at {EXAMPLES}")
def test_schema_invalid_shapes_never_raise() -> None:
    for path in _examples():
        resource = json.loads(path.read_text(encoding="utf-8"))
        for offset in range(3):
            scrambled = _scramble(resource, [offset])
            assert isinstance(scrambled, dict)
            patient_compartment(scrambled, extract(scrambled))
            compartment(scrambled)


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason=f"R4 examples not found at {EXAMPLES}")
def test_compartment_shortcut_agrees_with_the_whole_extraction() -> None:
    """The gate decides and audits a write by `compartment`; the store files the row under
    `patient_compartment` of all its index rows. On every official example (and each one
    pointed at a local Patient) the two must name the same record."""
    checked = with_patient = 0
    for path in _examples():
        resource = json.loads(path.read_text(encoding="utf-8"))
        for doc in (resource, _local_patients(resource)):
            expected = patient_compartment(doc, extract(doc))
            assert compartment(doc) == expected, path.name
            checked += 1
            with_patient += expected is not None
    assert checked > 1000 and with_patient > 300


def _local_patients(node: Any) -> Any:
    """`node` with every absolute or contained Patient reference made a local one."""
    if isinstance(node, dict):
        out = {k: _local_patients(v) for k, v in node.items()}
        ref = out.get("reference")
        if isinstance(ref, str) and "Patient/" in ref:
            out["reference"] = "Patient/" + ref.rsplit("Patient/", 1)[1].split("/")[0]
        return out
    if isinstance(node, list):
        return [_local_patients(v) for v in node]
    return node
