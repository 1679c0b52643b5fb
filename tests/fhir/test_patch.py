"""Tests for akson.fhir.patch: JSON Patch (RFC 6902) and FHIRPath Patch on FHIR resources."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

if (
    importlib.util.find_spec("akson") is None
):  # the package is not installed into .venv (src layout)
    sys.path.insert(0, str(Path(__file__).parents[2] / "src"))

from akson.fhir.outcome import FhirError  # noqa: E402
from akson.fhir.patch import apply_fhirpath_patch, apply_json_patch, apply_patch  # noqa: E402

DATA = Path(__file__).parents[1] / "data" / "patch"
JSON_CASES = json.loads((DATA / "json-patch-tests.json").read_text(encoding="utf-8"))
FHIRPATH_CASES = json.loads((DATA / "fhirpatch-cases.json").read_text(encoding="utf-8"))

# Official FHIRPath Patch cases this implementation does not support, with the reason.
UNSUPPORTED: dict[str, str] = {}


# --------------------------------------------------------------------------- official test cases


@pytest.mark.parametrize("case", JSON_CASES, ids=[c["comment"] for c in JSON_CASES])
def test_official_json_patch_case(case: dict) -> None:
    doc_before = copy.deepcopy(case["doc"])
    if "error" in case:
        with pytest.raises(FhirError) as err:
            apply_json_patch(case["doc"], case["patch"])
        assert err.value.status == 422
        assert err.value.code == "processing"
    else:
        assert apply_json_patch(case["doc"], case["patch"]) == case["expected"]
    assert case["doc"] == doc_before


def _fhirpath_params() -> list[Any]:
    out = []
    for case in FHIRPATH_CASES:
        marks = []
        if case["name"] in UNSUPPORTED:
            marks.append(pytest.mark.xfail(reason=UNSUPPORTED[case["name"]], strict=True))
        out.append(pytest.param(case, id=case["name"], marks=marks))
    return out


@pytest.mark.parametrize("case", _fhirpath_params())
def test_official_fhirpath_patch_case(case: dict) -> None:
    before = copy.deepcopy(case["input"])
    if "error" in case:
        with pytest.raises(FhirError) as err:
            apply_fhirpath_patch(case["input"], case["patch"])
        assert err.value.status == 422
        assert err.value.code == "processing"
        assert err.value.expression == ("Parameters.parameter[0]",)
        assert "No content found" in err.value.diagnostics
    else:
        result = apply_patch(case["input"], "application/fhir+json", case["patch"])
        assert result == case["output"]
    assert case["input"] == before


def test_official_fhirpath_patch_pass_rate() -> None:
    assert len(FHIRPATH_CASES) == 33
    assert len(UNSUPPORTED) <= len(FHIRPATH_CASES) * 0.2


# --------------------------------------------------------------------------- JSON Patch behaviour

PATIENT: dict = {
    "resourceType": "Patient",
    "id": "p1",
    "active": True,
    "name": [{"family": "Nordmann", "given": ["Ola"]}, {"family": "Hansen"}],
    "birthDate": "1980-01-01",
}


def _error(fn: Any, *args: Any) -> FhirError:
    with pytest.raises(FhirError) as err:
        fn(*args)
    return err.value


def test_json_patch_returns_new_dict_and_never_mutates_input() -> None:
    before = copy.deepcopy(PATIENT)
    value = {"family": "Berg"}
    patch = [{"op": "add", "path": "/name/-", "value": value}]
    result = apply_json_patch(PATIENT, patch)
    assert before == PATIENT
    assert result["name"][-1] == {"family": "Berg"}
    # The result shares no containers with the input or the patch document.
    result["name"][0]["given"].append("Kari")
    result["name"][-1]["family"] = "changed"
    assert before == PATIENT
    assert value == {"family": "Berg"}


def test_json_patch_pointer_escapes_and_array_end() -> None:
    doc = {"resourceType": "Basic", "a/b": {"m~n": [1]}}
    patch = [
        {"op": "add", "path": "/a~1b/m~0n/-", "value": 2},
        {"op": "copy", "from": "/a~1b/m~0n/0", "path": "/a~1b/m~0n/0"},
    ]
    assert apply_json_patch(doc, patch)["a/b"]["m~n"] == [1, 1, 2]


def test_json_patch_failing_test_rolls_back_everything() -> None:
    patch = [
        {"op": "replace", "path": "/birthDate", "value": "1990-02-02"},
        {"op": "remove", "path": "/name/1"},
        {"op": "test", "path": "/active", "value": False},
    ]
    err = _error(apply_json_patch, PATIENT, patch)
    assert err.status == 422
    assert err.code == "processing"
    assert err.expression == ("/active",)
    assert "operation 2" in err.diagnostics and "test failed" in err.diagnostics
    assert PATIENT["birthDate"] == "1980-01-01" and len(PATIENT["name"]) == 2


def test_json_patch_test_distinguishes_booleans_from_numbers() -> None:
    err = _error(
        apply_json_patch,
        {"resourceType": "Basic", "n": 1},
        [{"op": "test", "path": "/n", "value": True}],
    )
    assert err.status == 422
    ok = apply_json_patch(
        {"resourceType": "Basic", "n": 1}, [{"op": "test", "path": "/n", "value": 1.0}]
    )
    assert ok["n"] == 1


def test_json_patch_move_and_remove() -> None:
    patch = [
        {"op": "move", "from": "/name/1", "path": "/name/0"},
        {"op": "remove", "path": "/active"},
    ]
    result = apply_json_patch(PATIENT, patch)
    assert [n["family"] for n in result["name"]] == ["Hansen", "Nordmann"]
    assert "active" not in result


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"op": "add", "path": "/x", "value": 1}, "must be a JSON array"),
        ([{"path": "/active", "value": False}], "has no 'op'"),
        ([{"op": "frobnicate", "path": "/active"}], "unknown op 'frobnicate'"),
        ([{"op": "replace", "value": False}], "has no 'path'"),
        ([{"op": "replace", "path": "active", "value": False}], "must be empty or start with '/'"),
        ([{"op": "replace", "path": "/a~2b", "value": False}], "invalid '~' escape"),
        ([{"op": "add", "path": "/active"}], "has no 'value'"),
        ([{"op": "copy", "path": "/x"}], "has no 'from'"),
        ([{"op": "move", "from": "/name", "path": "/name/0/x"}], "into its own child"),
        (["remove /active"], "is not an object"),
    ],
)
def test_json_patch_malformed_document_is_400(patch: object, message: str) -> None:
    err = _error(apply_json_patch, PATIENT, patch)
    assert err.status == 400
    assert message in err.diagnostics


def test_json_patch_malformed_later_op_is_400_even_if_earlier_op_fails() -> None:
    patch = [{"op": "remove", "path": "/nope"}, {"op": "bogus", "path": "/x"}]
    assert _error(apply_json_patch, PATIENT, patch).status == 400


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ([{"op": "remove", "path": "/deceasedBoolean"}], "path /deceasedBoolean does not exist"),
        ([{"op": "replace", "path": "/name/5/family", "value": "x"}], "out of bounds"),
        ([{"op": "add", "path": "/name/01", "value": {}}], "not a valid array index"),
        ([{"op": "add", "path": "/birthDate/x", "value": 1}], "neither an object nor an array"),
        ([{"op": "replace", "path": "", "value": [1]}], "non-object"),
    ],
)
def test_json_patch_unapplicable_is_422(patch: list, message: str) -> None:
    err = _error(apply_json_patch, PATIENT, patch)
    assert err.status == 422
    assert err.code == "processing"
    assert message in err.diagnostics


# --------------------------------------------------------------------------- identity and dispatch


@pytest.mark.parametrize(
    "patch",
    [
        [{"op": "replace", "path": "/id", "value": "other"}],
        [{"op": "remove", "path": "/id"}],
        [{"op": "replace", "path": "/resourceType", "value": "Person"}],
        [{"op": "replace", "path": "", "value": {"resourceType": "Patient", "id": "p2"}}],
    ],
)
def test_json_patch_may_not_change_identity(patch: list) -> None:
    err = _error(apply_patch, PATIENT, "application/json-patch+json", patch)
    assert err.status == 422
    assert err.code == "processing"
    assert "must not change" in err.diagnostics


def _op(type_: str, path: str, **parts: Any) -> dict:
    part: list[dict] = [{"name": "type", "valueCode": type_}, {"name": "path", "valueString": path}]
    for name, value in parts.items():
        if name in ("index", "source", "destination"):
            part.append({"name": name, "valueInteger": value})
        elif name == "name":
            part.append({"name": name, "valueString": value})
        else:
            part.append({"name": "value", **value})
    return {"name": "operation", "part": part}


def _params(*ops: dict) -> dict:
    return {"resourceType": "Parameters", "parameter": list(ops)}


def test_fhirpath_patch_may_not_change_id() -> None:
    body = _params(_op("replace", "Patient.id", value={"valueId": "other"}))
    err = _error(apply_patch, PATIENT, "application/fhir+json", body)
    assert err.status == 422 and err.expression == ("id",)
    err = _error(apply_fhirpath_patch, PATIENT, _params(_op("delete", "Patient.id")))
    assert err.status == 422


@pytest.mark.parametrize(
    "content_type", ["application/xml-patch+xml", "text/plain", "application/fhir+xml", ""]
)
def test_unknown_content_type_is_415(content_type: str) -> None:
    err = _error(apply_patch, PATIENT, content_type, [])
    assert err.status == 415
    assert err.code == "not-supported"


def test_dispatch_by_content_type() -> None:
    json_patch = [{"op": "replace", "path": "/active", "value": False}]
    fhir_patch = _params(_op("replace", "Patient.active", value={"valueBoolean": False}))
    for ct in ("application/json-patch+json", "Application/JSON-Patch+JSON; charset=utf-8"):
        assert apply_patch(PATIENT, ct, json_patch)["active"] is False
    for ct in ("application/fhir+json", "application/json", "application/fhir+json;charset=UTF-8"):
        assert apply_patch(PATIENT, ct, fhir_patch)["active"] is False
    # A JSON Patch array sent as application/fhir+json is a client mistake: say so (400).
    err = _error(apply_patch, PATIENT, "application/fhir+json", json_patch)
    assert err.status == 400 and "application/json-patch+json" in err.diagnostics
    err = _error(apply_patch, PATIENT, "application/fhir+json", {"resourceType": "Patient"})
    assert err.status == 400
    err = _error(apply_patch, PATIENT, "application/json-patch+json; charset=latin-1", json_patch)
    assert err.status == 415


# ------------------------------------------------------------------- FHIRPath Patch behaviour

OBS: dict = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    "valueQuantity": {"value": 72, "unit": "/min"},
    "component": [
        {"code": {"text": "a"}, "valueString": "x"},
        {"code": {"text": "b"}, "valueInteger": 3},
    ],
    "extension": [
        {"url": "http://example.org/a", "valueString": "A"},
        {"url": "http://example.org/b", "valueBoolean": True},
    ],
}


def test_fhirpath_choice_element_replace_changes_json_key() -> None:
    body = _params(_op("replace", "Observation.value", value={"valueString": "high"}))
    result = apply_fhirpath_patch(OBS, body)
    assert result["valueString"] == "high" and "valueQuantity" not in result
    assert OBS["valueQuantity"] == {"value": 72, "unit": "/min"}


def test_fhirpath_add_choice_element_uses_typed_key() -> None:
    patient = {"resourceType": "Patient", "id": "p"}
    body = _params(_op("add", "Patient", name="deceased", value={"valueDateTime": "2020-01-01"}))
    assert apply_fhirpath_patch(patient, body)["deceasedDateTime"] == "2020-01-01"
    body = _params(_op("add", "Patient", name="deceased", value={"valueQuantity": {"value": 1}}))
    err = _error(apply_fhirpath_patch, patient, body)
    assert err.status == 422 and "cannot be of type Quantity" in err.diagnostics


def test_fhirpath_where_first_last_extension_oftype() -> None:
    cases = {
        "Observation.component.where(code.text = 'b').value": "valueInteger",
        "Observation.component.where(code.text != 'b' and value = 'x').value": "valueString",
        "Observation.component.first().value": "valueString",
        "Observation.component.last().value.ofType(integer)": "valueInteger",
        "Observation.component[1].value as integer": "valueInteger",
    }
    for path, key in cases.items():
        result = apply_fhirpath_patch(OBS, _params(_op("delete", path)))
        remaining = [k for c in result["component"] for k in c if k.startswith("value")]
        assert key not in remaining, path
        assert len(remaining) == 1, path
    body = _params(
        _op(
            "replace",
            "Observation.extension('http://example.org/b').value",
            value={"valueBoolean": False},
        )
    )
    assert apply_fhirpath_patch(OBS, body)["extension"][1] == {
        "url": "http://example.org/b",
        "valueBoolean": False,
    }
    body = _params(
        _op(
            "delete",
            "Observation.extension.where(url = 'http://example.org/a' and $this.value = 'A')",
        )
    )
    assert [e["url"] for e in apply_fhirpath_patch(OBS, body)["extension"]] == [
        "http://example.org/b"
    ]


def test_fhirpath_delete_of_nothing_is_noop() -> None:
    body = _params(_op("delete", "Observation.component.where(code.text = 'zzz')"))
    assert apply_fhirpath_patch(OBS, body) == OBS


@pytest.mark.parametrize(
    ("op", "message"),
    [
        (
            _op("replace", "Observation.component.code.text", value={"valueString": "c"}),
            "matches 2",
        ),
        (_op("delete", "Observation.component"), "matches 2"),
        (_op("replace", "Observation.issued", value={"valueInstant": "2020"}), "No content found"),
        (
            _op("insert", "Observation.note", index=0, value={"valueString": "x"}),
            "No content found",
        ),
        (_op("move", "Observation.note", source=0, destination=1), "No content found"),
        (
            _op("move", "Observation.component", source=0, destination=2),
            "destination 2 is out of range",
        ),
        (_op("insert", "Observation.component", index=3, value={"part": []}), "beyond the end"),
        (
            _op("insert", "Observation.status", index=0, value={"valueCode": "x"}),
            "not select a repeating",
        ),
        (
            _op("add", "Observation", name="bogus", value={"valueString": "x"}),
            "no element named 'bogus'",
        ),
        (_op("add", "Observation.status", name="x", value={"valueString": "x"}), "primitive"),
    ],
)
def test_fhirpath_unapplicable_is_422(op: dict, message: str) -> None:
    err = _error(apply_fhirpath_patch, OBS, _params(op))
    assert err.status == 422
    assert err.code == "processing"
    assert err.expression == ("Parameters.parameter[0]",)
    assert message in err.diagnostics


def test_fhirpath_failure_rolls_back_earlier_operations() -> None:
    body = _params(
        _op("replace", "Observation.status", value={"valueCode": "amended"}),
        _op("delete", "Observation.component"),  # matches two elements: 422
    )
    err = _error(apply_fhirpath_patch, OBS, body)
    assert err.expression == ("Parameters.parameter[1]",)
    assert OBS["status"] == "final"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"resourceType": "Patient"}, "must be a Parameters resource"),
        ([], "must be a Parameters resource"),
        (
            {"resourceType": "Parameters", "parameter": [{"name": "op", "part": []}]},
            "must be 'operation'",
        ),
        (_params({"name": "operation"}), "needs a 'part' array"),
        (_params(_op("upsert", "Observation.status")), "type must be one of"),
        (_params(_op("replace", "Observation.status")), "needs a 'value' part"),
        (_params(_op("add", "Observation", value={"valueString": "x"})), "needs a 'name' part"),
        (_params(_op("move", "Observation.component", source=0)), "needs a 'destination' part"),
        (_params(_op("delete", "Observation.component.where(")), "invalid path"),
        (_params(_op("delete", "Observation.component.aggregate(1)")), "not supported"),
        (
            _params(_op("insert", "Observation.component", index=-1, value={"valueString": "x"})),
            "non-negative",
        ),
    ],
)
def test_fhirpath_malformed_document_is_400(body: object, message: str) -> None:
    err = _error(apply_fhirpath_patch, OBS, body)
    assert err.status == 400
    assert message in err.diagnostics


def test_fhirpath_add_complex_from_parts_uses_cardinality() -> None:
    body = _params(
        _op(
            "add",
            "Observation",
            name="component",
            value={
                "part": [
                    {"name": "code", "valueCodeableConcept": {"text": "c"}},
                    {"name": "value", "valueQuantity": {"value": 1}},
                    {"name": "interpretation", "valueCodeableConcept": {"text": "N"}},
                ]
            },
        )
    )
    added = apply_fhirpath_patch(OBS, body)["component"][-1]
    assert added == {
        "code": {"text": "c"},
        "valueQuantity": {"value": 1},
        "interpretation": [{"text": "N"}],
    }


def test_fhirpath_delete_primitive_drops_its_extension_sibling() -> None:
    patient = {
        "resourceType": "Patient",
        "birthDate": "1970-01-01",
        "_birthDate": {"extension": [{"url": "http://x", "valueString": "y"}]},
    }
    assert apply_fhirpath_patch(patient, _params(_op("delete", "Patient.birthDate"))) == {
        "resourceType": "Patient"
    }
