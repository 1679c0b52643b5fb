"""Bulk Data `$export` over HTTP: kick-off, status, manifest, files, cancel, errors (both DBs)
(https://hl7.org/fhir/uv/bulkdata/STU2/export.html)."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections import Counter
from pathlib import Path

import orjson
import pytest

ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
LOINC = "http://loinc.org"


def _create(client, resource: dict) -> dict:
    resp = client.post(f"/{resource['resourceType']}", json=resource)
    assert resp.status_code == 201, resp.text
    return resp.json()


def _ref(resource: dict) -> dict:
    return {"reference": f"{resource['resourceType']}/{resource['id']}"}


def _kickoff(client, path: str, params: dict | None = None) -> str:
    resp = client.get(path, params=params, headers=ASYNC)
    assert resp.status_code == 202, resp.text
    assert resp.json()["resourceType"] == "OperationOutcome"
    location = resp.headers["content-location"]
    assert "/fhir/$export-status/" in location
    return location


def _wait(client, status_url: str) -> dict:
    """Poll the status URL until the manifest arrives (bounded: 30 s, 20 ms between polls)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        resp = client.get(status_url)
        if resp.status_code == 200:
            assert resp.headers["content-type"].startswith("application/json")
            return resp.json()
        assert resp.status_code == 202, resp.text
        assert resp.headers["x-progress"] and int(resp.headers["retry-after"]) > 0
        time.sleep(0.02)  # between polls only; the test waits on the status, not on time
    raise AssertionError("export did not finish in 30 s")


def _lines(client, url: str) -> list[bytes]:
    resp = client.get(url, headers={"Accept": "application/fhir+ndjson"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/fhir+ndjson"
    assert resp.content.endswith(b"\n")
    return resp.content.splitlines()


def _export(client, path: str, params: dict | None = None) -> tuple[dict, dict[str, list[bytes]]]:
    """Run an export to the end: the manifest and every file's lines by type."""
    manifest = _wait(client, _kickoff(client, path, params))
    by_type: dict[str, list[bytes]] = {}
    for out in manifest["output"]:
        lines = _lines(client, out["url"])
        assert out["count"] == len(lines)
        by_type.setdefault(out["type"], []).extend(lines)
    return manifest, by_type


def _all(client, res_type: str) -> dict[str, dict]:
    """Every live resource of a type, by id, by searching (following next links)."""
    out: dict[str, dict] = {}
    resp = client.get(f"/{res_type}", params={"_count": 1000})
    for _ in range(1000):
        bundle = resp.json()
        out.update({e["resource"]["id"]: e["resource"] for e in bundle.get("entry", [])})
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not nxt:
            return out
        resp = client.get(nxt[0])
    raise AssertionError("search paging did not end")


def _ids(lines: list[bytes]) -> list[str]:
    return [orjson.loads(line)["id"] for line in lines]


@pytest.fixture
def people(client) -> dict[str, dict]:
    """Three patients with pulse and weight observations, a practitioner, a group of two."""
    prac = _create(client, {"resourceType": "Practitioner", "name": [{"family": "Lege"}]})
    out: dict[str, dict] = {"prac": prac}
    for name in ("a", "b", "c"):
        pat = _create(client, {"resourceType": "Patient", "name": [{"family": f"P{name}"}],
                               "generalPractitioner": [_ref(prac)]})
        out[name] = pat
        for code in ("8867-4", "29463-7"):
            out[f"{name}-{code}"] = _create(client, {
                "resourceType": "Observation", "status": "final", "subject": _ref(pat),
                "code": {"coding": [{"system": LOINC, "code": code}]}, "performer": [_ref(prac)]})
    out["group"] = _create(client, {"resourceType": "Group", "type": "person", "actual": True,
                                    "member": [{"entity": _ref(out["a"])},
                                               {"entity": _ref(out["b"])}]})
    return out


def test_system_export_files_are_exactly_the_stored_resources(client, server, people):
    types = ["Patient", "Observation", "Practitioner", "Group"]
    manifest, by_type = _export(client, "/$export", {"_type": ",".join(types),
                                                     "_outputFormat": "application/fhir+ndjson"})
    assert manifest["request"].endswith("/fhir/$export?_type=Patient%2CObservation%2CPractitioner"
                                        "%2CGroup&_outputFormat=application%2Ffhir%2Bndjson")
    assert manifest["requiresAccessToken"] is True and manifest["error"] == []
    assert manifest["transactionTime"].endswith("Z")
    assert sorted(by_type) == sorted(types)
    for res_type in types:
        stored = _all(client, res_type)
        lines = by_type[res_type]
        assert sorted(_ids(lines)) == sorted(stored), res_type  # each once, none missing
        for line in lines:
            # Byte for byte what a read serves: the stored JSON, not a re-serialisation.
            rid = orjson.loads(line)["id"]
            assert line == client.get(f"/{res_type}/{rid}").content
    # The files are where the manifest says, under the export folder.
    job = manifest["output"][0]["url"].split("/")[-2]
    folder = Path(server.app.settings.export_dir) / job
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        o["url"].rsplit("/", 1)[-1] for o in manifest["output"])
    assert all(p.name.endswith("-1.ndjson") for p in folder.iterdir())


def test_export_without_type_covers_every_type_present(client, people):
    manifest, by_type = _export(client, "/$export")
    assert {"Patient", "Observation", "Practitioner", "Group"} <= set(by_type)
    assert all(out["count"] > 0 for out in manifest["output"])
    assert people["c-8867-4"]["id"] in _ids(by_type["Observation"])


def test_export_since(client, people):
    # The Group was written after every Observation so far: nothing has changed since.
    manifest, nothing = _export(client, "/$export", {"_type": "Observation",
                                                     "_since": people["group"]["meta"]["lastUpdated"]})
    assert nothing == {} and manifest["output"] == []
    late = _create(client, {"resourceType": "Observation", "status": "final",
                            "code": {"text": "sen"}, "subject": _ref(people["a"])})
    manifest, after = _export(client, "/$export", {"_type": "Observation",
                                                   "_since": late["meta"]["lastUpdated"]})
    assert _ids(after["Observation"]) == [late["id"]]


def test_export_type_filter(client, people):
    _, by_type = _export(client, "/Group/" + people["group"]["id"] + "/$export", {
        "_type": "Observation,Patient",
        "_typeFilter": f"Observation?code={LOINC}|8867-4",
    })
    assert sorted(_ids(by_type["Observation"])) == sorted(
        people[f"{p}-8867-4"]["id"] for p in ("a", "b"))
    # A type without a filter is exported whole (within the scope).
    assert sorted(_ids(by_type["Patient"])) == sorted(people[p]["id"] for p in ("a", "b"))
    # Two filters for one type are ORed; a filter can use several parameters.
    _, ored = _export(client, "/$export", {
        "_type": "Observation",
        "_typeFilter": [f"Observation?code={LOINC}|8867-4&subject=Patient/{people['a']['id']}",
                        f"Observation?code={LOINC}|29463-7&subject=Patient/{people['c']['id']}"],
    })
    assert sorted(_ids(ored["Observation"])) == sorted(
        [people["a-8867-4"]["id"], people["c-29463-7"]["id"]])


def test_group_export_has_only_the_members_data(client, people):
    _, by_type = _export(client, f"/Group/{people['group']['id']}/$export")
    assert sorted(by_type) == ["Observation", "Patient"]  # not the practitioner, not the Group
    assert sorted(_ids(by_type["Patient"])) == sorted(people[p]["id"] for p in ("a", "b"))
    assert sorted(_ids(by_type["Observation"])) == sorted(
        people[f"{p}-{c}"]["id"] for p in ("a", "b") for c in ("8867-4", "29463-7"))


def test_patient_export_has_patient_data_only(client, people):
    _, by_type = _export(client, "/Patient/$export")
    assert "Practitioner" not in by_type and "Group" not in by_type
    for p in ("a", "b", "c"):
        assert people[p]["id"] in _ids(by_type["Patient"])
        assert people[f"{p}-8867-4"]["id"] in _ids(by_type["Observation"])
    for line in by_type["Observation"]:
        assert orjson.loads(line)["subject"]["reference"].startswith("Patient/")


def _export_audit_names(db_url: str) -> Counter[str]:
    """How often each patient is named by the audit log's `export` records."""
    if db_url.startswith("sqlite"):
        sql = ("SELECT p.value FROM audit_event e, json_each(e.patients) p "
               "WHERE e.subtype = 'export'")
        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
            return Counter(str(r[0]) for r in conn.execute(sql))
    import psycopg

    sql = "SELECT unnest(patients) FROM audit_event WHERE subtype = 'export'"
    with psycopg.connect(db_url.replace("+psycopg", "")) as conn:
        return Counter(str(r[0]) for r in conn.execute(sql))


def _exported_patients_in_audit(db_url: str) -> set[str]:
    """Patients named by the audit log's `export` records."""
    return set(_export_audit_names(db_url))


def test_an_export_names_each_patient_once(client, server, people):
    """One export job is one access to each record it reads: a patient whose Patient and
    Observations both left is named in one audit record of the job, not in one per type."""
    url = server.app.settings.database_url
    before = _export_audit_names(url)
    _, by_type = _export(client, "/Patient/$export", {"_type": "Patient,Observation"})
    added = _export_audit_names(url) - before
    exported = {orjson.loads(line)["id"] for line in by_type["Patient"]} | {
        orjson.loads(line)["subject"]["reference"].removeprefix("Patient/")
        for line in by_type["Observation"]}
    assert {people[p]["id"] for p in "abc"} <= exported
    assert set(added) == exported
    assert set(added.values()) == {1}


def test_every_exported_patient_is_in_the_audit_log(client, server, people):
    """Helsepersonelloven § 21a: whose data left in an export is recorded, not only who asked
    (a Patient-level kick-off names no patients). Each chunk the worker writes is audited with
    the patients whose data it holds."""
    _, by_type = _export(client, "/Patient/$export", {"_type": "Observation"})
    observed = {orjson.loads(line)["subject"]["reference"].removeprefix("Patient/")
                for line in by_type["Observation"]}
    assert {people[p]["id"] for p in "abc"} <= observed
    assert observed <= _exported_patients_in_audit(server.app.settings.database_url)


def test_deleted_resources_are_not_exported(client, people):
    client.delete(f"/Observation/{people['a-8867-4']['id']}").raise_for_status()
    _, by_type = _export(client, f"/Group/{people['group']['id']}/$export",
                         {"_type": "Observation"})
    assert people["a-8867-4"]["id"] not in _ids(by_type["Observation"])
    assert people["a-29463-7"]["id"] in _ids(by_type["Observation"])


def test_delete_cancels_and_removes_the_files(client, server, people):
    manifest = _wait(client, status := _kickoff(client, "/$export", {"_type": "Patient"}))
    job = status.rsplit("/", 1)[-1]
    folder = Path(server.app.settings.export_dir) / job
    assert folder.is_dir()
    file_url = manifest["output"][0]["url"]
    resp = client.delete(status)
    assert resp.status_code == 202 and resp.json()["resourceType"] == "OperationOutcome"
    assert not folder.exists()
    assert client.get(status).status_code == 404
    assert client.get(file_url).status_code == 404
    assert client.delete(status).status_code == 404
    # Cancelling right after the kick-off: whatever the worker had done is gone too.
    status = _kickoff(client, "/$export")
    assert client.delete(status).status_code == 202
    assert client.get(status).status_code == 404
    job = status.rsplit("/", 1)[-1]
    deadline = time.monotonic() + 30
    while (Path(server.app.settings.export_dir) / job).exists():  # the worker may be mid-chunk
        assert time.monotonic() < deadline, "cancelled job's folder was not removed"
        time.sleep(0.02)


def test_kickoff_errors(client, people):
    assert client.get("/$export").status_code == 400  # no Prefer: respond-async
    resp = client.get("/$export", headers={"Accept": "application/fhir+json"})
    assert resp.status_code == 400 and "respond-async" in resp.text
    for params in ({"_type": "Nope"}, {"_outputFormat": "text/csv"}, {"_since": "yesterday"},
                   {"_typeFilter": "Observation?nonsense=1"},
                   {"_typeFilter": "Observation?code=x&_count=5"},
                   {"_typeFilter": "code=x"}, {"_elements": "Observation.nope"},
                   {"_elements": "Nope.id"}, {"includeAssociatedData": "LatestProvenanceResources"},
                   {"patient": "Patient/x"}):
        resp = client.get("/$export", params=params, headers=ASYNC)
        assert resp.status_code == 400, params
        assert resp.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/Group/{uuid.uuid4().hex}/$export", headers=ASYNC).status_code == 404
    assert client.put("/$export", headers=ASYNC, json={"resourceType": "Parameters"}
                      ).status_code == 405
    assert client.get("/Observation/$export", headers=ASYNC).status_code == 404


def test_status_and_file_errors(client, people):
    assert client.get(f"/$export-status/{uuid.uuid4()}").status_code == 404
    assert client.get("/$export-status/not-a-job").status_code == 404
    assert client.delete(f"/$export-status/{uuid.uuid4()}").status_code == 404
    manifest = _wait(client, _kickoff(client, "/$export", {"_type": "Patient"}))
    url = manifest["output"][0]["url"]
    base, name = url.rsplit("/", 1)
    assert name == "Patient-1.ndjson"
    for bad in ("Observation-1.ndjson", "Patient-2.ndjson", "..%2F..%2Fakson.db", "%2Fetc%2Fpasswd"):
        assert client.get(f"{base}/{bad}").status_code == 404, bad
    assert client.get(f"{base}/../../akson.db").status_code == 404
    assert client.get(url, headers={"Accept": "text/csv"}).status_code == 406
    assert client.get(url, headers={"Accept": "*/*"}).status_code == 200
    head = client.head(url, headers={"Accept": "application/fhir+ndjson"})
    assert head.status_code == 200 and int(head.headers["content-length"]) > 0
