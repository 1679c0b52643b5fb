"""Tests for the FHIRPath subset compiler and the search-parameter registry."""

from __future__ import annotations

from importlib import resources

import orjson
import pytest

from akson.fhir.fhirpath_compile import FhirPathCompileError, compile_expression, parse
from akson.fhir.outcome import FhirError
from akson.fhir.searchparams import SearchParam, SearchParamRegistry

OBS = {
    "resourceType": "Observation",
    "subject": {"reference": "Patient/p1"},
    "performer": [{"reference": "Practitioner/d1"}, {"reference": "Patient/p1"}],
    "effectivePeriod": {"start": "2024-01-01"},
    "valueQuantity": {"value": 7.2, "system": "http://unitsofmeasure.org", "code": "mmol/L"},
    "component": [
        {"code": {"text": "a"}, "valueString": "x"},
        {"code": {"text": "b"}, "valueCodeableConcept": {"text": "blue"}},
    ],
}


# --- compiler ----------------------------------------------------------------------------------


def test_plain_path_and_union_pruned_by_type() -> None:
    f = compile_expression("Patient.name.family | Practitioner.name.family", "Patient")
    patient = {"resourceType": "Patient", "name": [{"family": "A"}, {"family": "B"}]}
    assert f(patient) == ["A", "B"]
    assert compile_expression("Practitioner.name.family", "Patient")(patient) == []


def test_unprefixed_paths_are_relative_to_the_resource() -> None:
    f = compile_expression("name | alias", "InsurancePlan")
    assert f({"resourceType": "InsurancePlan", "name": "n", "alias": ["a", "b"]}) == ["n", "a", "b"]


def test_bare_choice_element_finds_the_present_key() -> None:
    f = compile_expression("Observation.effective", "Observation")
    assert f(OBS) == [{"start": "2024-01-01"}]
    assert f({"resourceType": "Observation", "effectiveDateTime": "2024"}) == ["2024"]


@pytest.mark.parametrize(
    "expr",
    ["(Observation.value as Quantity)", "Observation.value.as(Quantity)",
     "Observation.value.ofType(Quantity)", "Observation.value as FHIR.Quantity"],
)
def test_as_selects_the_typed_choice_key(expr: str) -> None:
    assert compile_expression(expr, "Observation")(OBS) == [OBS["valueQuantity"]]


def test_as_lowercase_primitive_type_is_capitalised() -> None:
    f = compile_expression("Condition.onset.as(dateTime) | Condition.onset.as(Period)", "Condition")
    assert f({"resourceType": "Condition", "onsetDateTime": "2020-01-01"}) == ["2020-01-01"]
    assert f({"resourceType": "Condition", "onsetString": "childhood"}) == []


def test_member_after_as() -> None:
    f = compile_expression(
        "(Observation.value as string) | (Observation.component.value as CodeableConcept).text",
        "Observation",
    )
    assert f(OBS) == ["blue"]


def test_where_resolve_is_filters_reference_target_type() -> None:
    f = compile_expression("Observation.performer.where(resolve() is Patient)", "Observation")
    assert f(OBS) == [{"reference": "Patient/p1"}]
    absolute = {"resourceType": "Observation", "performer": [
        {"reference": "https://x.no/fhir/Patient/9/_history/2"},
        {"type": "Patient", "identifier": {"value": "1"}},
        {"reference": "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"},
    ]}
    assert len(f(absolute)) == 2


def test_where_equality_on_member() -> None:
    f = compile_expression(
        "ActivityDefinition.relatedArtifact.where(type='composed-of').resource",
        "ActivityDefinition",
    )
    res = {"resourceType": "ActivityDefinition", "relatedArtifact": [
        {"type": "composed-of", "resource": "http://x/Library/a"},
        {"type": "depends-on", "resource": "http://x/Library/b"},
    ]}
    assert f(res) == ["http://x/Library/a"]


def test_boolean_expression_three_valued() -> None:
    f = compile_expression("Patient.deceased.exists() and Patient.deceased != false", "Patient")
    assert f({"resourceType": "Patient"}) == [False]
    assert f({"resourceType": "Patient", "deceasedBoolean": False}) == [False]
    assert f({"resourceType": "Patient", "deceasedBoolean": True}) == [True]
    assert f({"resourceType": "Patient", "deceasedDateTime": "2020-05-01"}) == [True]


def test_indexer_extension_and_resource_variable() -> None:
    bundle = {"resourceType": "Bundle", "entry": [{"resource": {"id": "c"}}, {"resource": {}}]}
    assert compile_expression("Bundle.entry[0].resource", "Bundle")(bundle) == [{"id": "c"}]
    url = "http://hl7.no/fhir/StructureDefinition/no-basis-middlename"
    patient = {"resourceType": "Patient", "name": [{"extension": [
        {"url": url, "valueString": "Mellom"}, {"url": "other", "valueString": "no"}]}]}
    f = compile_expression(f"Patient.name.extension('{url}').value.as(string)", "Patient")
    assert f(patient) == ["Mellom"]
    g = compile_expression(f"Patient.name.extension.where(url = '{url}').value", "Patient")
    assert g(patient) == ["Mellom"]
    assert compile_expression("%resource.id")({"id": "x"}) == ["x"]


def test_untyped_compile_tests_resource_type_at_run_time() -> None:
    f = compile_expression("Patient.gender | Practitioner.gender")
    assert f({"resourceType": "Practitioner", "gender": "female"}) == ["female"]
    assert f({"resourceType": "Group", "gender": "male"}) == []


def test_relative_component_expression() -> None:
    f = compile_expression("value.as(Quantity) | value.as(Range)")
    assert f({"valueRange": {"low": {"value": 1}}}) == [{"low": {"value": 1}}]


@pytest.mark.parametrize(
    "expr",
    ["Patient.name.select(family)", "Patient.name.family + 'x'", "Patient.name[", "Patient..x",
     "Observation.subject.resolve()", "Patient.name is HumanName"],
)
def test_unsupported_or_malformed_raise_compile_error(expr: str) -> None:
    with pytest.raises(FhirPathCompileError):
        compile_expression(expr, "Patient")


def test_parse_precedence_union_binds_tighter_than_and() -> None:
    tree = parse("a | b and c")
    assert type(tree).__name__ == "Binary" and tree.op == "and"


# --- registry ----------------------------------------------------------------------------------


def test_default_registry_loads_r4_and_compiles_all_expressions() -> None:
    reg = SearchParamRegistry.default()
    assert reg is SearchParamRegistry.default()
    data = orjson.loads(
        (resources.files("akson.fhir.data") / "search-parameters.json").read_bytes()
    )
    with_expr = [e["resource"] for e in data["entry"] if e["resource"].get("expression")]
    assert len(with_expr) == 1372
    assert len(list(reg)) == 1372 + 2  # and Akson's middlename and municipality
    assert reg.uncompiled == []


def test_get_for_type_and_common_params() -> None:
    reg = SearchParamRegistry.default()
    family = reg.get("Patient", "family")
    assert isinstance(family, SearchParam)
    assert family.type == "string" and "Patient" in family.base
    assert family.url == "http://hl7.org/fhir/SearchParameter/individual-family"
    for code in ("_id", "_lastUpdated", "_tag", "_profile", "_security", "_source"):
        assert reg.get("Observation", code) is not None, code
    assert reg.get("Patient", "nope") is None
    subject = reg.get("Observation", "subject")
    assert subject is not None and subject.type == "reference" and "Patient" in subject.target
    params = reg.for_type("Patient")
    assert {"name", "birthdate", "identifier", "_tag"} <= set(params)
    assert "code" not in params
    assert "Observation" in reg.resource_types


def test_composite_components() -> None:
    p = SearchParamRegistry.default().get("Observation", "code-value-quantity")
    assert p is not None and p.type == "composite"
    assert p.components == (
        ("http://hl7.org/fhir/SearchParameter/clinical-code", "code"),
        ("http://hl7.org/fhir/SearchParameter/Observation-value-quantity", "value.as(Quantity)"),
    )


MIDDLENAME = {
    "resourceType": "SearchParameter",
    "url": "http://hl7.no/fhir/SearchParameter/no-basis-middlename",
    "name": "middlename",
    "code": "middlename",
    "base": ["Patient", "Practitioner"],
    "type": "string",
    "expression": "Patient.name.extension('http://hl7.no/fhir/StructureDefinition/"
    "no-basis-middlename').value.as(string) | Practitioner.name.extension('http://hl7.no/fhir/"
    "StructureDefinition/no-basis-middlename').value.as(string)",
}


def test_add_runtime_parameter_without_touching_default() -> None:
    reg = SearchParamRegistry.default().copy()
    version = reg.version
    p = reg.add(MIDDLENAME)
    assert reg.version > version
    assert reg.get("Patient", "middlename") is p
    assert reg.get("Practitioner", "middlename") is p
    assert "middlename" in reg.for_type("Patient")
    assert SearchParamRegistry.default().get("Patient", "middlename") is not p
    extractor = p.extractor("Practitioner")
    assert extractor is not None
    assert extractor({"resourceType": "Practitioner", "name": [{"extension": [{
        "url": "http://hl7.no/fhir/StructureDefinition/no-basis-middlename",
        "valueString": "Mellom"}]}]}) == ["Mellom"]


@pytest.mark.parametrize(
    "bad",
    [
        {"resourceType": "Patient"},
        {**MIDDLENAME, "code": ""},
        {**MIDDLENAME, "type": "fuzzy"},
        {**MIDDLENAME, "base": []},
        {**MIDDLENAME, "expression": "Patient.name.select(given)"},
    ],
)
def test_add_refuses_unusable_parameters(bad: dict) -> None:
    reg = SearchParamRegistry()
    with pytest.raises(FhirError) as err:
        reg.add(bad)
    assert err.value.status == 400
