"""SearchParameters as data: POSTed parameters are indexed online, with progress, on both DBs."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from akson.config import Settings
from akson.store.migrate import upgrade
from tests.conftest import PG_ADMIN, ThreadServer, _pg_admin_connect

MIDDLENAME = "http://hl7.no/fhir/StructureDefinition/no-basis-middlename"
MUNICIPALITY = "http://hl7.no/fhir/StructureDefinition/no-basis-municipalitycode"
KOMMUNENUMMER = "https://register.geonorge.no/sosi-kodelister/kommunenummer"
JOB = "https://akson.no/fhir/StructureDefinition/reindex-job"


@pytest.fixture(scope="module")
def db_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database of this module's own: these tests change the server's search parameters."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sp') / 'akson.db'}"
        return
    import psycopg

    name = f"akson_sp_{uuid.uuid4().hex[:10]}"
    try:
        with _pg_admin_connect() as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    yield f"postgresql+psycopg://{PG_ADMIN.rsplit('/', 1)[0].split('://', 1)[1]}/{name}"
    with _pg_admin_connect() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _serve(url: str) -> ThreadServer:
    srv = ThreadServer(Settings(database_url=url)).__enter__()
    worker = srv.app.reindexer
    assert worker is not None
    # Small batches with a pause between them: a job lasts long enough to be watched.
    worker.batch_rows, worker.pause_seconds, worker.poll_seconds = 3, 0.02, 0.05
    return srv


@pytest.fixture(scope="module")
def srv(db_url: str) -> Iterator[ThreadServer]:
    upgrade(db_url)
    server = _serve(db_url)
    yield server
    server.__exit__()


@pytest.fixture
def fhir(srv: ThreadServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.url + "/fhir", timeout=30, auth=srv.auth()) as c:
        yield c


def _sp(code: str, expression: str, ptype: str = "date", base: tuple[str, ...] = ("Patient",)
        ) -> dict:
    return {"resourceType": "SearchParameter", "url": f"https://akson.test/sp/{code}",
            "name": code.replace("-", "_"), "status": "active", "description": f"test {code}",
            "code": code, "base": list(base), "type": ptype, "expression": expression}


def _ids(bundle: dict) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", [])
            if e.get("search", {}).get("mode") != "outcome"}


def _outcomes(bundle: dict) -> list[dict]:
    return [e["resource"] for e in bundle.get("entry", [])
            if e.get("search", {}).get("mode") == "outcome"]


def _job(c: httpx.Client, sp_id: str) -> dict[str, Any]:
    """The newest job of a SearchParameter from `$reindex-status`, as a dict."""
    r = c.get(f"/SearchParameter/{sp_id}/$reindex-status")
    assert r.status_code == 200, r.text
    issue = r.json()["issue"][0]
    fields = issue["extension"][0]["extension"]
    return {f["url"]: next(v for k, v in f.items() if k.startswith("value")) for f in fields}


def _job_count(c: httpx.Client, sp_id: str) -> int:
    issues = c.get(f"/SearchParameter/{sp_id}/$reindex-status").json()["issue"]
    return sum(1 for i in issues if i.get("extension"))


def _wait_job(c: httpx.Client, sp_id: str, status: str = "completed", seconds: float = 30) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = _job(c, sp_id)
        if job["status"] == status:
            return job
        time.sleep(0.02)
    raise AssertionError(f"job of SearchParameter/{sp_id} not {status}: {job}")


def _patients(c: httpx.Client, tag: str, dates: list[str]) -> list[str]:
    ids = []
    for i, d in enumerate(dates):
        rid = f"{tag}-{i}"
        r = c.put(f"/Patient/{rid}", json={"resourceType": "Patient", "id": rid, "birthDate": d,
                                           "meta": {"tag": [{"system": "urn:t", "code": tag}]}})
        assert r.status_code == 201, r.text
        ids.append(rid)
    return ids


def _sql(db_url: str, sql: str, params: tuple = ()) -> list[tuple]:
    """Run one statement on the module's database directly (committed); its rows."""
    if db_url.startswith("sqlite"):
        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
            return [tuple(r) for r in conn.execute(sql.replace("%s", "?"), params).fetchall()]
    import psycopg

    with psycopg.connect(db_url.replace("+psycopg", "")) as conn:
        cur = conn.execute(sql, params)
        return [tuple(r) for r in cur.fetchall()] if cur.description else []


def _index_rows(db_url: str, code: str) -> int:
    return int(_sql(db_url, "SELECT (SELECT COUNT(*) FROM sp_date WHERE param = %s) + "
                            "(SELECT COUNT(*) FROM sp_token WHERE param = %s)", (code, code))[0][0])


def test_posted_parameter_is_indexed_online_for_old_and_new_resources(
        fhir: httpx.Client, srv: ThreadServer) -> None:
    tag = uuid.uuid4().hex[:8]
    code = f"birth-year-ish-{tag}"
    old = _patients(fhir, tag, ["1980-05-17", "1980", "1975-01-01"] + ["1990-02-02"] * 30)
    r = fhir.post("/SearchParameter", json=_sp(code, "Patient.birthDate"))
    assert r.status_code == 201, r.text
    sp_id = r.json()["id"]
    assert fhir.get(f"/SearchParameter/{sp_id}").json()["resourceType"] == "SearchParameter"

    # While the job runs: progress is visible, other requests are served, and searching the
    # parameter is answered with a warning that results may be incomplete.
    job = _wait_job(fhir, sp_id, "running")
    assert job["action"] == "index" and job["code"] == code
    warned = 0
    while job["status"] == "running":
        assert fhir.get(f"/Patient/{old[0]}").status_code == 200
        during = fhir.get("/Patient", params={code: "1980", "_tag": f"urn:t|{tag}"})
        assert during.status_code == 200
        outcomes = _outcomes(during.json())
        if outcomes:
            issue = outcomes[0]["issue"][0]
            assert issue["severity"] == "warning" and issue["code"] == "incomplete"
            assert code in issue["diagnostics"]
            warned += 1
        job = _job(fhir, sp_id)
    assert warned > 0
    job = _wait_job(fhir, sp_id)
    assert job["done"] == job["total"] and job["total"] >= len(old)

    found = fhir.get("/Patient", params={code: "1980", "_tag": f"urn:t|{tag}"}).json()
    assert _ids(found) == {old[0], old[1]}
    assert not _outcomes(found)  # indexed: no warning any more
    assert _ids(fhir.get("/Patient", params={code: "lt1979", "_tag": f"urn:t|{tag}"}).json()) \
        == {old[2]}
    # A write after the parameter exists is indexed by the live registry at once.
    new = _patients(fhir, tag + "n", ["1980-12-24"])
    assert _ids(fhir.get("/Patient", params={code: "1980-12"}).json()) == set(new)
    meta = fhir.get("/metadata").json()
    patient = next(x for x in meta["rest"][0]["resource"] if x["type"] == "Patient")
    assert code in {p["name"] for p in patient["searchParam"]}


def test_expression_the_compiler_cannot_handle_is_refused_and_not_stored(
        fhir: httpx.Client) -> None:
    code = f"bad-{uuid.uuid4().hex[:8]}"
    body = _sp(code, "Patient.name.given.substring(1)", "string")
    r = fhir.post("/SearchParameter", json=body)
    assert r.status_code == 422, r.text
    assert "SearchParameter.expression" in r.json()["issue"][0]["expression"]
    stored = fhir.get("/SearchParameter", params={"url": body["url"]}).json()
    assert _ids(stored) == set()
    assert fhir.get("/Patient", params={code: "x"}).status_code == 400  # unknown parameter
    # A code that already means a built-in parameter is refused too.
    r = fhir.post("/SearchParameter", json=_sp("birthdate", "Patient.birthDate"))
    assert r.status_code == 422 and "SearchParameter.code" in r.json()["issue"][0]["expression"]
    # So is a second resource with a url already in use.
    taken = _sp(f"dup-{code}", "Patient.birthDate")
    assert fhir.post("/SearchParameter", json=taken).status_code == 201
    r = fhir.post("/SearchParameter", json={**taken, "code": f"dup2-{code}"})
    assert r.status_code == 422 and "SearchParameter.url" in r.json()["issue"][0]["expression"]
    # A copy of a built-in definition is stored as data; the built-in stays as it is.
    builtin = {**_sp("birthdate", "Patient.birthDate"),
               "url": "http://hl7.org/fhir/SearchParameter/individual-birthdate"}
    r = fhir.post("/SearchParameter", json=builtin)
    assert r.status_code == 201, r.text
    assert _job_count(fhir, r.json()["id"]) == 0


def test_delete_removes_the_parameter_and_its_index_rows(
        fhir: httpx.Client, db_url: str) -> None:
    tag = uuid.uuid4().hex[:8]
    code = f"gender-ish-{tag}"
    _patients(fhir, tag, ["2001-01-01", "2002-02-02"])
    sp_id = fhir.post("/SearchParameter", json=_sp(code, "Patient.birthDate")).json()["id"]
    _wait_job(fhir, sp_id)
    assert len(_ids(fhir.get("/Patient", params={code: "ge2001"}).json())) >= 2
    assert _index_rows(db_url, code) >= 2

    assert fhir.delete(f"/SearchParameter/{sp_id}").status_code == 200
    assert fhir.get("/Patient", params={code: "ge2001"}).status_code == 400
    job = _wait_job(fhir, sp_id)
    assert job["action"] == "remove"
    assert _index_rows(db_url, code) == 0
    # Writes after the delete no longer index it.
    _patients(fhir, tag + "x", ["2003-03-03"])
    assert _index_rows(db_url, code) == 0


def test_update_that_changes_the_code_moves_the_index(fhir: httpx.Client, db_url: str) -> None:
    tag = uuid.uuid4().hex[:8]
    first, second = f"a-{tag}", f"b-{tag}"
    ids = _patients(fhir, tag, ["1970-07-07"])
    body = _sp(first, "Patient.birthDate")
    sp_id = fhir.post("/SearchParameter", json=body).json()["id"]
    _wait_job(fhir, sp_id)
    r = fhir.put(f"/SearchParameter/{sp_id}", json={**body, "id": sp_id, "code": second})
    assert r.status_code == 200, r.text
    assert fhir.get("/Patient", params={first: "1970"}).status_code == 400
    _wait_job(fhir, sp_id)
    assert _ids(fhir.get("/Patient", params={second: "1970-07"}).json()) == set(ids)
    assert _index_rows(db_url, first) == 0


def test_another_server_learns_parameters_at_start_and_by_polling(
        fhir: httpx.Client, db_url: str) -> None:
    tag = uuid.uuid4().hex[:8]
    before = f"early-{tag}"
    ids = _patients(fhir, tag, ["1960-06-06"])
    sp_id = fhir.post("/SearchParameter", json=_sp(before, "Patient.birthDate")).json()["id"]
    _wait_job(fhir, sp_id)
    other = _serve(db_url)  # a second process on the same database, started after
    try:
        with httpx.Client(base_url=other.url + "/fhir", timeout=30, auth=other.auth()) as c2:
            assert _ids(c2.get("/Patient", params={before: "1960"}).json()) == set(ids)
            # A parameter added through the first server reaches the second by polling.
            after = f"late-{tag}"
            fhir.post("/SearchParameter", json=_sp(after, "Patient.birthDate"))
            deadline = time.monotonic() + 20
            while c2.get("/Patient", params={after: "1960"}).status_code != 200:
                assert time.monotonic() < deadline, "the second server never learnt the parameter"
                time.sleep(0.02)
    finally:
        other.__exit__()


def test_norwegian_middlename_and_municipality(fhir: httpx.Client) -> None:
    tag = uuid.uuid4().hex[:8]
    district = {"extension": [{"url": MUNICIPALITY, "valueCoding": {
        "system": KOMMUNENUMMER, "code": "4601", "display": "Bergen"}}]}
    patient = {"resourceType": "Patient", "id": f"{tag}-p",
               "name": [{"use": "official", "family": "Nordmann", "given": ["Kari"],
                         "text": "Kari Åsmund Nordmann",
                         "extension": [{"url": MIDDLENAME, "valueString": "Åsmund"}]}],
               "address": [{"use": "home", "city": "Bergen", "district": "Bergen",
                            "_district": district}]}
    org = {"resourceType": "Organization", "id": f"{tag}-o", "name": f"Legekontor {tag}",
           "address": [{"district": "Bergen", "_district": district}]}
    for res in (patient, org):
        r = fhir.put(f"/{res['resourceType']}/{res['id']}", json=res)
        assert r.status_code == 201, r.text
    assert f"{tag}-p" in _ids(fhir.get("/Patient", params={"middlename": "asmund"}).json())
    assert f"{tag}-p" not in _ids(fhir.get("/Patient", params={"given": "asmund"}).json())
    by_code = fhir.get("/Patient", params={"municipality": f"{KOMMUNENUMMER}|4601",
                                          "family": "Nordmann"}).json()
    assert f"{tag}-p" in _ids(by_code)
    assert f"{tag}-o" in _ids(fhir.get("/Organization", params={"municipality": "4601"}).json())
    assert f"{tag}-o" not in _ids(fhir.get("/Organization",
                                           params={"municipality": "0301"}).json())


def test_reindex_status_of_unknown_parameter_is_404(fhir: httpx.Client) -> None:
    assert fhir.get("/SearchParameter/nope-nope/$reindex-status").status_code == 404


def test_cli_reindex_rebuilds_a_parameter(fhir: httpx.Client, db_url: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from akson.cli import main

    tag = uuid.uuid4().hex[:8]
    code = f"cli-{tag}"
    ids = _patients(fhir, tag, ["1955-05-05"])
    sp_id = fhir.post("/SearchParameter", json=_sp(code, "Patient.birthDate")).json()["id"]
    _wait_job(fhir, sp_id)
    monkeypatch.setenv("AKSON_DATABASE_URL", db_url)
    result = CliRunner().invoke(main, ["reindex", "--param", code, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "completed" in result.output
    assert _ids(fhir.get("/Patient", params={code: "1955"}).json()) == set(ids)
    assert CliRunner().invoke(main, ["reindex", "--param", "no-such-code"]).exit_code == 2
    # Without --param every row of every resource is rebuilt; searches answer as before.
    result = CliRunner().invoke(main, ["reindex", "--no-progress", "--batch", "7"])
    assert result.exit_code == 0 and "all parameters: completed" in result.output, result.output
    assert _ids(fhir.get("/Patient", params={code: "1955"}).json()) == set(ids)
    assert set(ids) <= _ids(fhir.get("/Patient", params={"birthdate": "1955-05-05"}).json())


def test_compiler_reaches_extensions_of_primitives() -> None:
    from akson.fhir.fhirpath_compile import compile_expression

    fn = compile_expression(f"Patient.address.district.extension('{MUNICIPALITY}').value",
                            "Patient")
    coding = {"system": KOMMUNENUMMER, "code": "0301"}
    patient = {"resourceType": "Patient", "address": [
        {"district": "Oslo", "_district": {"extension": [{"url": MUNICIPALITY,
                                                          "valueCoding": coding}]}},
        {"district": "Bergen"}]}
    assert fn(patient) == [coding]
    # Repeating primitives: `_given` lines up with `given`, nulls where there is no extension.
    given = compile_expression("name.given.extension('urn:x').value")
    assert given({"name": [{"given": ["A", "B"], "_given": [None, {"extension": [
        {"url": "urn:x", "valueString": "b"}]}]}]}) == ["b"]


def test_registry_remove_and_replace_by_url() -> None:
    from akson.fhir.searchparams import SearchParamRegistry

    default = SearchParamRegistry.default()
    reg = default.copy()
    body = _sp("x-test", "Patient.birthDate")
    reg.add(body)
    assert reg.get("Patient", "x-test") is not None and default.get("Patient", "x-test") is None
    version = reg.version
    reg.add({**body, "code": "y-test"})  # same url, new code: the old code goes
    assert reg.get("Patient", "x-test") is None and reg.get("Patient", "y-test") is not None
    assert reg.version != version
    removed = reg.remove(body["url"])
    assert removed is not None and removed.code == "y-test"
    assert reg.get("Patient", "y-test") is None and reg.by_url(body["url"]) is None
    assert reg.get("Patient", "middlename") is default.get("Patient", "middlename") is not None


def test_cli_reindex_of_a_composite_keeps_its_rows(fhir: httpx.Client, db_url: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A composite's rows are built from its components; reindexing it alone keeps them."""
    from click.testing import CliRunner

    from akson.cli import main

    tag = uuid.uuid4().hex[:8]
    systolic = {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}
    obs = {"resourceType": "Observation", "status": "final",
           "code": {"coding": [{"system": f"https://akson.test/{tag}", "code": "bp"}]},
           "component": [{"code": systolic, "valueQuantity": {
               "value": 128, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}]}
    obs_id = fhir.post("/Observation", json=obs).json()["id"]
    query = {"code": f"https://akson.test/{tag}|bp",
             "component-code-value-quantity": "http://loinc.org|8480-6$gt120"}
    assert _ids(fhir.get("/Observation", params=query).json()) == {obs_id}
    monkeypatch.setenv("AKSON_DATABASE_URL", db_url)
    result = CliRunner().invoke(main, ["reindex", "--param", "component-code-value-quantity",
                                       "--no-progress"])
    assert result.exit_code == 0, result.output
    assert _ids(fhir.get("/Observation", params=query).json()) == {obs_id}
    assert _ids(fhir.get("/Observation", params={
        "code": f"https://akson.test/{tag}|bp", "component-code": "http://loinc.org|8480-6"}
    ).json()) == {obs_id}


def _pairs_of(db_url: str, res_id: str) -> list[str]:
    return [r[0] for r in _sql(
        db_url, "SELECT c.param FROM sp_composite c JOIN resource r ON r.pk = c.res_pk "
                "WHERE r.res_id = %s AND c.param LIKE %s ORDER BY 1", (res_id, "%+%"))]


def _drop_pairs(db_url: str) -> None:
    _sql(db_url, "DELETE FROM sp_composite WHERE param LIKE %s", ("%+%",))


def test_cli_reindex_of_a_paired_parameter_keeps_and_rebuilds_the_pairs(
        fhir: httpx.Client, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Paired rows (akson.fhir.pairs) are built from both their parameters: a reindex of the
    date rebuilds them, and one of the code builds them where they are missing (what
    migration 0021 queues for a database that holds Observations)."""
    from click.testing import CliRunner

    from akson.cli import main

    tag = uuid.uuid4().hex[:8]
    patient = fhir.post("/Patient", json={"resourceType": "Patient"}).json()["id"]
    obs = {"resourceType": "Observation", "status": "final", "effectiveDateTime": "2019-05-01",
           "code": {"coding": [{"system": "http://loinc.org", "code": f"p-{tag}"}]},
           "subject": {"reference": f"Patient/{patient}"}}
    obs_id = fhir.post("/Observation", json=obs).json()["id"]
    both = ["code+date", "code+patient"]
    assert _pairs_of(db_url, obs_id) == both
    monkeypatch.setenv("AKSON_DATABASE_URL", db_url)
    result = CliRunner().invoke(main, ["reindex", "--param", "date", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert _pairs_of(db_url, obs_id) == both
    _drop_pairs(db_url)
    result = CliRunner().invoke(main, ["reindex", "--param", "code", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert _pairs_of(db_url, obs_id) == both
    query = {"code": f"http://loinc.org|p-{tag}", "date": "2019"}
    assert _ids(fhir.get("/Observation", params=query).json()) == {obs_id}
    assert _ids(fhir.get("/Patient", params={
        "_has:Observation:patient:code": f"http://loinc.org|p-{tag}"}).json()) == {patient}
