"""The TestScript runner itself: every operation type, variables, and failures that must be caught."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.conformance.fhirpath_mini import evaluate
from tests.conformance.testscript_runner import TestScriptRunner

PATIENT = {"resourceType": "Patient", "id": "selfcheck-pat", "gender": "female",
           "name": [{"family": "Selfcheckdottir", "given": ["Kari"]}]}
PATCH = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
    {"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "Patient.gender"},
    {"name": "value", "valueCode": "male"}]}]}
BATCH = {"resourceType": "Bundle", "type": "batch", "entry": [
    {"request": {"method": "GET", "url": "Patient/selfcheck-pat"}}]}
TRANSACTION = {"resourceType": "Bundle", "type": "transaction", "entry": [
    {"fullUrl": "urn:uuid:5b7e1b4e-0000-4000-8000-000000000001",
     "resource": {"resourceType": "Patient", "gender": "other"},
     "request": {"method": "POST", "url": "Patient"}}]}


def _op(code: str, **kw: object) -> dict:
    return {"operation": {"type": {"code": code}, **kw}}


def _assert(**kw: object) -> dict:
    return {"assert": {"warningOnly": False, **kw}}


def _script(tmp_path: Path, tests: list[dict]) -> Path:
    fixtures = tmp_path / "fixtures"
    fixtures.mkdir()
    for name, body in (("pat", PATIENT), ("patch", PATCH), ("batch", BATCH), ("tx", TRANSACTION)):
        (fixtures / f"{name}.json").write_text(json.dumps(body))
    script = {
        "resourceType": "TestScript", "id": "selfcheck", "status": "active", "name": "selfcheck",
        "fixture": [{"id": f, "autocreate": False, "autodelete": False,
                     "resource": {"reference": f"fixtures/{f}.json"}}
                    for f in ("pat", "patch", "batch", "tx")],
        "variable": [{"name": "patId", "expression": "Patient.id", "sourceId": "pat"},
                     {"name": "family", "expression": "Patient.name.first().family", "sourceId": "pat"},
                     {"name": "etag", "headerField": "ETag", "sourceId": "created"}],
        "setup": {"action": [_op("update", resource="Patient", params="/${patId}", sourceId="pat",
                                 responseId="created", contentType="json"),
                             _assert(responseCode="200,201", operator="in")]},
        "test": [{"name": "t", "action": tests}],
        "teardown": {"action": [_op("delete", resource="Patient", targetId="pat")]},
    }
    path = tmp_path / "selfcheck.json"
    path.write_text(json.dumps(script))
    return path


def test_runner_exercises_every_operation_type(client: httpx.Client, tmp_path: Path) -> None:
    tests = [
        _op("read", resource="Patient", targetId="pat", responseId="read"),
        _assert(response="okay"), _assert(resource="Patient"),
        _assert(contentType="json"), _assert(headerField="ETag", operator="equals", value="${etag}"),
        _assert(expression="Patient.name.given.first()", value="Kari"),
        _assert(expression="Patient.name.first().family", compareToSourceId="pat",
                compareToSourceExpression="Patient.name.first().family", operator="equals"),
        _op("vread", resource="Patient", targetId="read"), _assert(response="okay"),
        _op("search", resource="Patient", params="?family=${family}"),
        _assert(expression="Bundle.total.toInteger() >= entry.count()", value="true"),
        _assert(expression="entry.count()", operator="greaterThan", value="0"),
        _assert(navigationLinks=True), _assert(requestURL="family=", operator="contains"),
        _op("patch", resource="Patient", params="/${patId}", sourceId="patch"),
        _assert(response="okay"), _assert(expression="Patient.gender", value="male"),
        _op("history", resource="Patient", targetId="pat"),
        _assert(expression="Bundle.type", value="history"),
        _assert(expression="entry.count()", operator="greaterThan", value="1"),
        _op("batch", sourceId="batch"), _assert(expression="Bundle.type", value="batch-response"),
        _op("transaction", sourceId="tx"),
        _assert(expression="entry.response.status.first()", operator="contains", value="201"),
        _op("read", resource="Patient", params="/does-not-exist"), _assert(response="notFound"),
        _op("read", resource="Patient", params="/x", accept="xml"), _assert(response="okay"),
    ]
    report = TestScriptRunner(client, _script(tmp_path, tests), tmp_path).run()
    assert report.failed == [], report.lines()
    assert len(report.passed) == 19
    assert len(report.skipped) == 2 and "accept xml" in report.skipped[0]
    assert client.get(f"/Patient/{PATIENT['id']}").status_code == 410  # teardown deleted it


def test_runner_reports_wrong_answers(client: httpx.Client, tmp_path: Path) -> None:
    tests = [
        _op("read", resource="Patient", targetId="pat"),
        _assert(response="notFound"), _assert(resource="Observation"),
        _assert(expression="Patient.name.given.first()", value="Ola"),
        _assert(expression="Patient.gender", compareToSourceId="pat",
                compareToSourceExpression="Patient.name.first().family", operator="equals"),
        _assert(headerField="Last-Modified", operator="empty", warningOnly=True),
    ]
    report = TestScriptRunner(client, _script(tmp_path, tests), tmp_path).run()
    assert len(report.failed) == 4, report.lines()
    assert len(report.warnings) == 1


def test_fhirpath_subset() -> None:
    bundle = {"resourceType": "Bundle", "total": 2, "entry": [
        {"resource": {"resourceType": "Patient", "name": [{"family": "A"}], "active": True}},
        {"resource": {"resourceType": "Observation", "valueQuantity": {"value": 6.3}}}]}
    assert evaluate("Bundle.total.toInteger() >= entry.count()", bundle) == [True]
    assert evaluate("Bundle.entry[0].resource.children().count()", bundle) == [2]
    assert evaluate("entry.resource.value.value", bundle) == [6.3]
    assert evaluate("Patient.name", bundle) == []
    assert evaluate("entry.resource.where(active = true).name.family", bundle) == ["A"]
    assert evaluate("entry.count() > 5 or total = 2", bundle) == [True]
