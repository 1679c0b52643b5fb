"""Bulk Data v2 `$export` over HTTP: POST kick-off with Parameters, `patient`, `_elements`,
`includeAssociatedData`, the `error` files, expiry and who may see a job (both DBs)
(https://hl7.org/fhir/uv/bulkdata/STU2/export.html)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from tests.conftest import ThreadServer, run_on_store
from tests.operations.conftest import fresh_database
from tests.operations.test_export import ASYNC, LOINC, _create, _ids, _lines, _ref, _wait

from akson.access.principal import Principal, to_json
from akson.access.scopes import parse_scopes
from akson.config import Settings
from akson.export_worker import ExportWorker
from akson.fhir import dates
from akson.fhir.outcome import FhirError
from akson.store import export as store_export
from akson.store.repository import ResourceStore
from akson.store.search_sql import Where

LENIENT = {**ASYNC, "Prefer": "respond-async, handling=lenient"}


def _params(*pairs: tuple[str, Any]) -> dict:
    """A Parameters resource: `("patient", {"reference": ...})` becomes a valueReference."""
    out = []
    for name, value in pairs:
        kind = "valueReference" if isinstance(value, dict) else "valueString"
        out.append({"name": name, kind: value})
    return {"resourceType": "Parameters", "parameter": out}


def _post(client: httpx.Client, path: str, body: dict, headers: dict | None = None
          ) -> httpx.Response:
    return client.post(path, content=orjson.dumps(body), headers={
        **(headers or ASYNC), "Content-Type": "application/fhir+json"})


def _post_kickoff(client: httpx.Client, path: str, body: dict, headers: dict | None = None) -> str:
    resp = _post(client, path, body, headers)
    assert resp.status_code == 202, resp.text
    return resp.headers["content-location"]


def _files(client: httpx.Client, manifest: dict, key: str = "output") -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for item in manifest[key]:
        lines = _lines(client, item["url"])
        assert item["count"] == len(lines)
        out.setdefault(item["type"], []).extend(lines)
    return out


def _diagnostics(resp: httpx.Response) -> str:
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome"
    return " ".join(i["diagnostics"] for i in body["issue"])


def _base(client: httpx.Client) -> str:
    return str(client.base_url).rstrip("/")


@pytest.fixture
def family(client) -> dict[str, dict]:
    """Three patients with a pulse each, and a Group of the first two."""
    out: dict[str, dict] = {}
    for name in ("a", "b", "c"):
        out[name] = _create(client, {"resourceType": "Patient", "name": [{"family": f"V{name}"}],
                                     "gender": "female"})
        out[f"{name}-obs"] = _create(client, {
            "resourceType": "Observation", "status": "final", "subject": _ref(out[name]),
            "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
            "valueQuantity": {"value": 61.5, "unit": "/min"}})
    out["group"] = _create(client, {"resourceType": "Group", "type": "person", "actual": True,
                                    "member": [{"entity": _ref(out["a"])},
                                               {"entity": _ref(out["b"])}]})
    return out


# ------------------------------------------------------------------ POST kick-off


def test_post_kickoff_means_what_the_same_get_means(client, family):
    since = family["a"]["meta"]["lastUpdated"]
    query = {"_type": "Patient,Observation", "_since": since,
             "_typeFilter": f"Observation?subject=Patient/{family['b']['id']}",
             "_outputFormat": "ndjson"}
    got = _wait(client, _post_kickoff(client, "/$export", _params(*query.items())))
    by_get = _files(client, _wait(client, _kickoff_get(client, "/$export", query)))
    by_post = _files(client, got)
    assert {t: sorted(_ids(lines)) for t, lines in by_post.items()} == \
        {t: sorted(_ids(lines)) for t, lines in by_get.items()}
    assert _ids(by_post["Observation"]) == [family["b-obs"]["id"]]
    assert family["c"]["id"] in _ids(by_post["Patient"])
    # The IG: a POST's `request` is the kick-off URL without its parameters.
    assert got["request"].endswith("/fhir/$export")
    assert got["requiresAccessToken"] is True and got["error"] == []
    # Repeated `_type` parameters add up, as comma-separated values do.
    two = _wait(client, _post_kickoff(client, "/$export", _params(
        ("_type", "Group"), ("_type", "Patient"))))
    assert sorted({o["type"] for o in two["output"]}) == ["Group", "Patient"]


def _kickoff_get(client: httpx.Client, path: str, params: dict) -> str:
    resp = client.get(path, params=params, headers=ASYNC)
    assert resp.status_code == 202, resp.text
    return resp.headers["content-location"]


def test_post_patient_parameter_limits_the_compartments(client, family):
    one = _params(("patient", _ref(family["a"])), ("_type", "Patient,Observation"))
    by_type = _files(client, _wait(client, _post_kickoff(client, "/Patient/$export", one)))
    assert _ids(by_type["Patient"]) == [family["a"]["id"]]
    assert _ids(by_type["Observation"]) == [family["a-obs"]["id"]]
    # Group level: a member, named by an absolute URL on this server.
    absolute = {"reference": f"{_base(client)}/Patient/{family['b']['id']}"}
    by_type = _files(client, _wait(client, _post_kickoff(
        client, f"/Group/{family['group']['id']}/$export", _params(("patient", absolute)))))
    assert sorted(by_type) == ["Observation", "Patient"]
    assert _ids(by_type["Patient"]) == [family["b"]["id"]]


def test_post_patient_parameter_errors(client, family):
    group = f"/Group/{family['group']['id']}/$export"
    cases = [
        ("/$export", [_ref(family["a"])], "Patient and Group level"),
        (group, [_ref(family["c"])], "not a member of the Group"),
        ("/Patient/$export", [{"reference": f"Patient/{uuid.uuid4()}"}], "not on this server"),
        ("/Patient/$export", [_ref(family["group"])], "not a reference to a Patient"),
        ("/Patient/$export", [{"reference": "http://elsewhere.example/fhir/Patient/1"}],
         "not a reference to a Patient"),
    ]
    for path, refs, message in cases:
        resp = _post(client, path, _params(*[("patient", ref) for ref in refs]))
        assert resp.status_code == 400, (path, refs)
        assert message in _diagnostics(resp), (path, refs)
    deleted = _create(client, {"resourceType": "Patient", "gender": "male"})
    client.delete(f"/Patient/{deleted['id']}").raise_for_status()
    resp = _post(client, "/Patient/$export", _params(("patient", _ref(deleted))))
    assert resp.status_code == 400 and "not on this server" in _diagnostics(resp)
    # `patient` is a POST parameter (IG); on a GET it is refused like any unknown parameter.
    resp = client.get("/Patient/$export", params={"patient": f"Patient/{family['a']['id']}"},
                      headers=ASYNC)
    assert resp.status_code == 400 and "POST parameter" in _diagnostics(resp)


def test_post_kickoff_errors(client, family):
    # Prefer: respond-async is required for POST as for GET.
    resp = _post(client, "/$export", _params(("_type", "Patient")),
                 {"Accept": "application/fhir+json"})
    assert resp.status_code == 400 and "respond-async" in _diagnostics(resp)
    bad: list[tuple[dict, str]] = [
        ({"resourceType": "Patient"}, "must be a Parameters resource"),
        ({"resourceType": "Parameters", "parameter": [{"name": "_type"}]}, "exactly one value"),
        ({"resourceType": "Parameters", "parameter": [{"valueString": "x"}]}, "has no name"),
        ({"resourceType": "Parameters", "parameter": 3}, "must be an array"),
        ({"resourceType": "Parameters", "parameter": ["_type"]}, "has no name"),
        (_params(("_outputFormat", "text/csv")), "_outputFormat"),
        (_params(("_type", "Nope")), "unknown resource types"),
        (_params(("_since", "last week")), ""),
        (_params(("_typeFilter", "Observation?nonsense=1")), ""),
        (_params(("_elements", "Observation.nope")), "has no element"),
        (_params(("frobnicate", "1")), "does not support the parameter 'frobnicate'"),
        (_params(("includeAssociatedData", "LatestProvenanceResources")), "not supported"),
        (_params(("includeAssociatedData", "Everything")), "not defined by the Bulk Data IG"),
        ({"resourceType": "Parameters", "parameter": [
            {"name": "_since", "valueBoolean": True}]}, "unsupported valueBoolean"),
        ({"resourceType": "Parameters", "parameter": [
            {"name": "patient", "valueString": "Patient/1"}]}, "valueReference"),
    ]
    for body, message in bad:
        resp = _post(client, "/Patient/$export", body)
        assert resp.status_code == 400, body
        assert message in _diagnostics(resp), (body, _diagnostics(resp))
    # An empty body is a kick-off without parameters.
    resp = client.post("/Patient/$export", headers=ASYNC)
    assert resp.status_code == 202, resp.text


# ------------------------------------------------------------------ _elements, error files


def test_elements_subsets_the_exported_resources(client, family):
    manifest = _wait(client, _kickoff_get(client, f"/Group/{family['group']['id']}/$export", {
        "_elements": "Patient.name,id", "_type": "Patient,Observation"}))
    by_type = _files(client, manifest)
    for line in by_type["Patient"]:
        patient = orjson.loads(line)
        assert set(patient) == {"resourceType", "id", "meta", "name"}  # no gender
        assert {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                "code": "SUBSETTED", "display": "subsetted"} in patient["meta"]["tag"]
    for line in by_type["Observation"]:
        # `id` applies to every type; mandatory elements (status, code) are always kept.
        assert set(orjson.loads(line)) == {"resourceType", "id", "meta", "status", "code"}
    assert sorted(_ids(by_type["Patient"])) == sorted([family["a"]["id"], family["b"]["id"]])


def test_lenient_kickoff_reports_what_it_ignored_in_the_error_files(client, family):
    status = _post_kickoff(client, "/Patient/$export", _params(
        ("_type", "Patient"), ("includeAssociatedData", "LatestProvenanceResources"),
        ("frobnicate", "1")), LENIENT)
    manifest = _wait(client, status)
    assert [o["type"] for o in manifest["output"]] == ["Patient"]
    assert [e["type"] for e in manifest["error"]] == ["OperationOutcome"]
    outcomes = [orjson.loads(line) for line in _files(client, manifest, "error")["OperationOutcome"]]
    assert [o["resourceType"] for o in outcomes] == ["OperationOutcome"] * 2
    texts = [o["issue"][0]["diagnostics"] for o in outcomes]
    assert "includeAssociatedData value 'LatestProvenanceResources'" in texts[0]
    assert "'frobnicate'" in texts[1] and all("ignored" in t for t in texts)
    assert all(o["issue"][0]["severity"] == "warning" for o in outcomes)


def test_group_members_not_on_the_server_are_reported(client, family):
    ghost = str(uuid.uuid4())
    group = _create(client, {"resourceType": "Group", "type": "person", "actual": True,
                             "member": [{"entity": _ref(family["c"])},
                                        {"entity": {"reference": f"Patient/{ghost}"}}]})
    manifest = _wait(client, _kickoff_get(client, f"/Group/{group['id']}/$export",
                                          {"_type": "Patient"}))
    assert _ids(_files(client, manifest)["Patient"]) == [family["c"]["id"]]
    errors = _files(client, manifest, "error")["OperationOutcome"]
    assert len(errors) == 1
    issue = orjson.loads(errors[0])["issue"][0]
    assert f"Patient/{ghost} is not on this server" in issue["diagnostics"]


# ------------------------------------------------------------------ who may see a job


def test_only_the_requester_may_poll_download_or_cancel(client, server, family):
    url = server.app.settings.database_url

    async def queue(store: ResourceStore) -> str:
        # Another system client's job, as its kick-off stores it (the worker acts for it).
        other = Principal(kind="system", issuer="https://issuer.test", subject="someone-else",
                          client_id="someone-else", scopes=parse_scopes("system/*.*"))
        params = {"level": "system", "types": ["Patient"], "since": None, "filters": {},
                  "requester": "someone-else", "base_url": _base(client),
                  "principal": to_json(other)}
        async with store.session(write=True) as s:
            return await store_export.create_job(s, "x", orjson.dumps(params).decode(),
                                                 dates.now_us())

    async def job(store: ResourceStore, job_id: str, requester: str | None) -> Any:
        async with store.session(write=False) as s:
            return await store_export.get_job(s, job_id, requester=requester)

    job_id = run_on_store(url, queue)
    deadline = time.monotonic() + 30
    while (run_on_store(url, lambda st: job(st, job_id, None))).status != "completed":  # server's worker
        assert time.monotonic() < deadline, "the other requester's job did not complete"
        time.sleep(0.02)
    assert run_on_store(url, lambda st: job(st, job_id, "anonymous")) is None
    theirs = run_on_store(url, lambda st: job(st, job_id, "someone-else"))
    file_url = orjson.loads(theirs.manifest)["output"][0]["url"]
    status = f"/$export-status/{job_id}"
    for resp in (client.get(status), client.get(file_url), client.delete(status)):
        assert resp.status_code == 404 and "is not known" in _diagnostics(resp)
    # The DELETE did nothing: the job and its files are still the other requester's.
    assert run_on_store(url, lambda st: job(st, job_id, None)).status == "completed"
    assert (Path(server.app.settings.export_dir) / job_id / "Patient-1.ndjson").exists()
    # This caller's own jobs are theirs to poll.
    assert _wait(client, _kickoff_get(client, "/$export", {"_type": "Group"}))["output"]


# ------------------------------------------------------------------ expiry


def test_complete_status_says_when_the_files_expire(client, family):
    before = time.time()
    status = _kickoff_get(client, "/$export", {"_type": "Group"})
    _wait(client, status)
    resp = client.get(status)
    expires = parsedate_to_datetime(resp.headers["expires"]).timestamp()
    # The default retention is 24 h from the job's completion (HTTP dates have whole seconds).
    assert before + 86_400 - 1 <= expires <= time.time() + 86_400 + 1


@pytest.fixture(scope="module")
def expiring(backend: str, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[ThreadServer, httpx.Client]]:
    """A server whose export files expire the moment a job completes (retention 0 s)."""
    folder = tmp_path_factory.mktemp(f"expiring-{backend}")
    for url in fresh_database(backend, folder):
        settings = Settings(database_url=url, export_dir=str(folder / "export"),
                            export_retention_seconds=0)
        with ThreadServer(settings) as srv, httpx.Client(
                base_url=srv.url + "/fhir", timeout=30, auth=srv.auth(),
                headers={"Accept": "application/fhir+json"}) as c:
            yield srv, c


def test_expired_export_answers_404_and_the_worker_deletes_its_files(expiring):
    srv, client = expiring
    _create(client, {"resourceType": "Patient", "gender": "other"})
    status = _kickoff_get(client, "/$export", {"_type": "Patient"})
    job_id = status.rsplit("/", 1)[-1]
    deadline = time.monotonic() + 30
    while (last := client.get(status)).status_code == 202:
        assert time.monotonic() < deadline, "export did not finish in 30 s"
        time.sleep(0.02)
    # Expired from the moment it completed: the status, the files and DELETE all say so.
    file_url = f"{_base(client)}/$export-file/{job_id}/Patient-1.ndjson"
    for resp in (last, client.get(file_url), client.delete(status)):
        assert resp.status_code == 404
        assert "has expired" in _diagnostics(resp)
    # The worker's sweep deletes the files and marks the job; it stays an expired 404.
    folder = Path(srv.app.settings.export_dir) / job_id

    async def sweep(store: ResourceStore) -> store_export.Job | None:
        worker = ExportWorker(store, srv.app.settings.export_dir, retention_seconds=0)
        await worker.expire_once()
        async with store.session(write=False) as s:
            return await store_export.get_job(s, job_id)

    job = run_on_store(srv.app.settings.database_url, sweep)
    assert job is not None and job.status == "expired" and job.manifest is None
    assert not folder.exists()
    resp = client.get(status)
    assert resp.status_code == 404 and "has expired" in _diagnostics(resp)


# ------------------------------------------------------------------ the access hook, the sweep

V9603 = "http://helsedir.no/fhir/CodeSystem/no-kodeverk-9603"  # Volven 9603 restriction codes
NORS = {"system": V9603, "code": "NORS"}


def _hide_nors(alias: str, res_type: str) -> Where:
    """A real policy predicate: rows whose `meta.security` carries NORS (the `_security` token
    index) are not visible."""
    return Where([f"NOT EXISTS (SELECT 1 FROM sp_token sec WHERE sec.res_pk = {alias}.pk "
                  "AND sec.res_type = %s AND sec.param = '_security' AND sec.system = %s "
                  "AND sec.code = %s)"], [res_type, V9603, "NORS"])


def _nested(depth: int) -> dict:
    """An extension nested `depth` levels (two JSON levels each): deeper than the server's
    default input limit, as stored where an operator had raised AKSON_MAX_JSON_DEPTH."""
    ext: dict = {"url": "http://akson.test/leaf", "valueString": "x"}
    for _ in range(depth // 2):
        ext = {"url": "http://akson.test/node", "extension": [ext]}
    return ext


@pytest.fixture(scope="module")
def quiet(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database with no server (so no other worker takes the jobs), with labelled data."""
    folder = tmp_path_factory.mktemp(f"quiet-{backend}")
    for url in fresh_database(backend, folder):

        async def load(store: ResourceStore) -> None:
            obs = {"resourceType": "Observation", "status": "final", "code": {"text": "puls"}}
            async with store.session(write=True) as s:
                for rid, doc in [
                    ("open", {"resourceType": "Patient", "gender": "female"}),
                    ("hidden", {"resourceType": "Patient", "gender": "female",
                                "meta": {"security": [NORS]}}),
                    ("o-open", {**obs, "subject": {"reference": "Patient/open"}}),
                    ("o-label", {**obs, "subject": {"reference": "Patient/open"},
                                 "meta": {"security": [NORS]}}),
                    ("o-of-hidden", {**obs, "subject": {"reference": "Patient/hidden"}}),
                    ("org", {"resourceType": "Organization", "name": "Legevakt"}),
                    ("org-label", {"resourceType": "Organization", "name": "Skjult",
                                   "meta": {"security": [NORS]}}),
                    ("basic-ok", {"resourceType": "Basic", "code": {"text": "x"}}),
                    ("basic-deep", {"resourceType": "Basic", "code": {"text": "x"},
                                    "extension": [_nested(70)]}),
                ]:
                    await s.create(doc["resourceType"], doc, res_id=rid)

        run_on_store(url, load)
        yield url


def _export_ids(url: str, folder: Path, params: dict[str, Any],
                access: store_export.ExportAccess | None) -> tuple[store_export.Job, dict]:
    """Queue a job as requester `gate-test`, run it with `access`, and read its files."""
    seen: list[str | None] = []

    async def hook(job: store_export.Job) -> store_export.ExportAccess | None:
        seen.append(job.requester)
        return access

    async def work(store: ResourceStore) -> store_export.Job:
        full = {"level": "system", "types": None, "since": None, "filters": {},
                "requester": "gate-test", "base_url": "http://akson.test/fhir", **params}
        async with store.session(write=True) as s:
            job_id = await store_export.create_job(s, "http://akson.test/fhir/$export",
                                                   orjson.dumps(full).decode(), dates.now_us())
        assert await ExportWorker(store, folder, access=hook).run_once()
        async with store.session(write=False) as s:
            job = await store_export.get_job(s, job_id)
        assert job is not None
        return job

    job = run_on_store(url, work)
    assert seen == ["gate-test"]  # the hook is asked once, with the recorded requester
    assert job.status == "completed", job.error
    out: dict[str, list[str]] = {}
    for item in orjson.loads(job.manifest or "{}")["output"]:
        lines = (folder / job.id / item["url"].rsplit("/", 1)[-1]).read_bytes().splitlines()
        out.setdefault(item["type"], []).extend(_ids(lines))
    return job, {t: sorted(ids) for t, ids in out.items()}


def test_access_hook_filters_every_exported_type_in_the_query(quiet, tmp_path):
    types = {"types": ["Observation", "Organization", "Patient"]}
    _, everything = _export_ids(quiet, tmp_path / "all", types, None)
    assert everything == {"Observation": ["o-label", "o-of-hidden", "o-open"],
                          "Organization": ["org", "org-label"], "Patient": ["hidden", "open"]}
    _, visible = _export_ids(quiet, tmp_path / "scoped", types,
                             store_export.ExportAccess(scope=_hide_nors))
    assert visible == {"Observation": ["o-of-hidden", "o-open"], "Organization": ["org"],
                       "Patient": ["open"]}
    # Patient level too: the restriction is ANDed with the compartment condition.
    _, patients = _export_ids(quiet, tmp_path / "patient", {**types, "level": "patient"},
                              store_export.ExportAccess(scope=_hide_nors))
    assert patients == {"Observation": ["o-of-hidden", "o-open"], "Patient": ["open"]}


def test_access_scope_reaches_type_filter_chains_and_extra_does_not(quiet, tmp_path):
    chained = {"types": ["Observation"],
               "filters": {"Observation": ["subject:Patient.gender=female"]}}
    # `scope` is applied to the rows a chain passes through: a hidden Patient matches nothing.
    _, scoped = _export_ids(quiet, tmp_path / "scope", chained,
                            store_export.ExportAccess(scope=_hide_nors))
    assert scoped == {"Observation": ["o-open"]}
    # `extra` is a predicate on the exported rows only (as in Session.search).
    _, extra = _export_ids(quiet, tmp_path / "extra", chained,
                           store_export.ExportAccess(extra=_hide_nors("r", "Observation")))
    assert extra == {"Observation": ["o-of-hidden", "o-open"]}


def test_access_hook_refusal_fails_the_job_with_its_message(quiet, tmp_path):
    async def refuse(job: store_export.Job) -> store_export.ExportAccess | None:
        raise FhirError(403, "This client may not export data")

    async def work(store: ResourceStore) -> store_export.Job | None:
        full = {"level": "system", "types": ["Patient"], "since": None, "filters": {},
                "requester": "gate-test", "base_url": "http://akson.test/fhir"}
        async with store.session(write=True) as s:
            job_id = await store_export.create_job(s, "x", orjson.dumps(full).decode(),
                                                   dates.now_us())
        assert await ExportWorker(store, tmp_path, access=refuse).run_once()
        async with store.session(write=False) as s:
            return await store_export.get_job(s, job_id)

    job = run_on_store(quiet, work)
    assert job is not None and job.status == "failed"
    assert job.error == "This client may not export data" and job.manifest is None
    assert not (tmp_path / job.id).exists()


def test_the_sweep_keeps_files_for_the_retention_time_then_deletes_them(quiet, tmp_path):
    job, _ = _export_ids(quiet, tmp_path, {"types": ["Patient"]}, None)
    assert job.finished is not None and (tmp_path / job.id / "Patient-1.ndjson").exists()

    async def sweep(store: ResourceStore, now: int) -> tuple[int, store_export.Job | None]:
        worker = ExportWorker(store, tmp_path, retention_seconds=10)
        done = await worker.expire_once(now)
        async with store.session(write=False) as s:
            return done, await store_export.get_job(s, job.id)

    done, kept = run_on_store(quiet, lambda st: sweep(st, job.finished + 9_000_000))
    assert done == 0 and kept is not None and kept.status == "completed"
    assert (tmp_path / job.id / "Patient-1.ndjson").exists()
    done, gone = run_on_store(quiet, lambda st: sweep(st, job.finished + 11_000_000))
    assert done >= 1 and gone is not None and gone.status == "expired" and gone.manifest is None
    assert not (tmp_path / job.id).exists()
    # An expired job cannot be cancelled back into another state.
    async def cancel(store: ResourceStore) -> bool:
        async with store.session(write=True) as s:
            return await store_export.cancel_job(s, job.id, dates.now_us())

    assert run_on_store(quiet, cancel) is False


def test_a_resource_that_cannot_be_subset_is_reported_in_the_error_files(quiet, tmp_path):
    job, by_type = _export_ids(quiet, tmp_path, {"types": ["Basic"], "elements": ["code"]}, None)
    assert by_type == {"Basic": ["basic-ok"]}  # the export as a whole succeeds
    manifest = orjson.loads(job.manifest or "{}")
    assert [(e["type"], e["count"]) for e in manifest["error"]] == [("OperationOutcome", 1)]
    name = manifest["error"][0]["url"].rsplit("/", 1)[-1]
    outcome = orjson.loads((tmp_path / job.id / name).read_bytes())
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["diagnostics"] == (
        "Basic/basic-deep could not be exported with _elements: "
        "JSON is nested deeper than 64 levels")
