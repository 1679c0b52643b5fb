"""`akson import`: NDJSON and Bundles load through validation; bad lines are named, never lost."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from akson.config import Settings
from akson.importer import run_import
from akson.store.database import connect
from akson.store.repository import ResourceStore
from tests.conftest import fresh_database, run_on_store


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path):
    with fresh_database(request.param, tmp_path, "akson_import") as url:
        yield Settings(database_url=url)


def _ndjson(path: Path, resources: list[dict | str]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in resources) + "\n")
    return path


def _read(settings: Settings, res_type: str, res_id: str) -> tuple[int, dict] | None:
    async def go(store: ResourceStore) -> tuple[int, dict] | None:
        async with store.session(write=False) as s:
            stored = await s.read(res_type, res_id)
            return None if stored is None else (stored.version, json.loads(stored.content))
    return run_on_store(settings.database_url, go, pool_size=1)


def test_ndjson_loads_and_names_each_bad_line(settings: Settings, tmp_path: Path) -> None:
    org = {"resourceType": "Organization", "id": "org-1", "name": "Legekontoret"}
    path = _ndjson(tmp_path / "data.ndjson", [
        org,
        "{not json",
        {"resourceType": "Patient", "id": "p-1", "gender": "nonsense"},
        {"resourceType": "Patient", "id": "p-2", "managingOrganization": {"reference": "Organization/org-1"}},
    ])
    summary = run_import(settings, [str(path)], progress=False)
    assert summary.loaded == 2
    assert [where for where, _ in summary.rejected] == [f"{path}:2", f"{path}:3"]
    assert "gender" in summary.rejected[1][1]
    assert _read(settings, "Patient", "p-2") is not None
    assert _read(settings, "Patient", "p-1") is None


def test_an_id_repeated_in_one_file_becomes_a_new_version(settings: Settings, tmp_path: Path) -> None:
    """Exports repeat shared resources (Synthea repeats Organizations); the last one wins."""
    first = {"resourceType": "Organization", "id": "shared", "name": "Første"}
    second = {"resourceType": "Organization", "id": "shared", "name": "Andre"}
    path = _ndjson(tmp_path / "org.ndjson", [first, second])
    summary = run_import(settings, [str(path)], progress=False)
    assert (summary.loaded, summary.rejected) == (2, [])
    version, body = _read(settings, "Organization", "shared")  # type: ignore[misc]
    assert (version, body["name"]) == (2, "Andre")
    # Importing again makes further versions, never a duplicate row or an error.
    assert run_import(settings, [str(path)], progress=False).loaded == 2
    assert _read(settings, "Organization", "shared")[0] == 4  # type: ignore[index]


def test_a_transaction_bundle_is_all_or_nothing(settings: Settings, tmp_path: Path) -> None:
    good = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:5f1c1a6e-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Patient", "name": [{"family": "Nordmann"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final",
                      "code": {"text": "Puls"},
                      "subject": {"reference": "urn:uuid:5f1c1a6e-0000-4000-8000-000000000001"}},
         "request": {"method": "POST", "url": "Observation"}},
    ]}
    bad = json.loads(json.dumps(good))
    bad["entry"][1]["resource"]["status"] = "not-a-status"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a-good.json").write_text(json.dumps(good))
    (tmp_path / "in" / "b-bad.json").write_text(json.dumps(bad))
    summary = run_import(settings, [str(tmp_path / "in")], progress=False)
    assert summary.loaded == 2
    assert len(summary.rejected) == 1 and summary.rejected[0][0].endswith("b-bad.json")


def _versions(settings: Settings, res_type: str, res_id: str) -> list[str]:
    """The `name` of each stored version, oldest first."""
    async def go(store: ResourceStore) -> list[str]:
        async with store.session(write=False) as s:
            out = []
            while (stored := await s.vread(res_type, res_id, len(out) + 1)) is not None:
                out.append(json.loads(stored.content)["name"])  # type: ignore[arg-type]
            return out
    return run_on_store(settings.database_url, go, pool_size=1)


def test_chunks_written_side_by_side_keep_the_order_of_the_lines(settings: Settings,
                                                                 tmp_path: Path) -> None:
    """On PostgreSQL two chunks are written at once; an id in both is still versioned in the
    order of the lines, and every line of every chunk is stored."""
    def org(res_id: str, name: str) -> dict:
        return {"resourceType": "Organization", "id": res_id, "name": name}
    lines = [org("a", "a1"), org("b", "b1"), org("a", "a2"), org("c", "c1"), org("a", "a3"),
             org("b", "b2"), org("d", "d1"), org("e", "e1"), org("a", "a4"), org("f", "f1")]
    path = _ndjson(tmp_path / "org.ndjson", lines)
    summary = run_import(settings, [str(path)], progress=False, chunk=2)
    assert (summary.loaded, summary.rejected, summary.chunks) == (10, [], 5)
    assert _versions(settings, "Organization", "a") == ["a1", "a2", "a3", "a4"]
    assert _versions(settings, "Organization", "b") == ["b1", "b2"]
    assert all(_versions(settings, "Organization", i) == [f"{i}1"] for i in "cdef")


def test_a_changed_resource_with_backslashes_becomes_its_next_version(settings: Settings,
                                                                       tmp_path: Path) -> None:
    """A repeated id is stored as a new version from the chunk's COPY lines, which hold the
    JSON with its backslashes escaped twice (for bytea, then for COPY)."""
    note = "C:\\mappe\\fil \"sitat\" \\N \\x00 Søreng"
    first = {"resourceType": "Organization", "id": "o", "name": "Første"}
    second = {**first, "name": note, "alias": ["\\\\", "tab\tslutt"]}
    path = _ndjson(tmp_path / "org.ndjson", [first, second])
    assert run_import(settings, [str(path)], progress=False).loaded == 2
    version, body = _read(settings, "Organization", "o")  # type: ignore[misc]
    assert (version, body["name"], body["alias"]) == (2, note, second["alias"])


def test_text_with_tabs_newlines_and_backslashes_survives(settings: Settings, tmp_path: Path) -> None:
    """COPY text format escapes these (PostgreSQL); what is read back is what was sent."""
    note = "Linje 1\n\tinnrykk \\ skråstrek \\N ikke null\r\nslutt"
    patient = {"resourceType": "Patient", "id": "p-text", "name": [{"family": "Tab\tNavn",
                                                                      "given": [note]}]}
    summary = run_import(settings, [str(_ndjson(tmp_path / "p.ndjson", [patient]))],
                         progress=False)
    assert (summary.loaded, summary.rejected) == (1, [])
    _, body = _read(settings, "Patient", "p-text")  # type: ignore[misc]
    assert body["name"] == patient["name"]


def test_a_re_delivered_resource_is_not_a_new_version(settings: Settings, tmp_path: Path) -> None:
    """Exports repeat shared resources unchanged; only a change makes a version."""
    org = {"resourceType": "Organization", "id": "same", "name": "Helsestasjonen"}
    path = _ndjson(tmp_path / "org.ndjson", [org, org])
    assert run_import(settings, [str(path)], progress=False).loaded == 2
    assert _read(settings, "Organization", "same")[0] == 1  # type: ignore[index]
    run_import(settings, [str(path)], progress=False)
    assert _read(settings, "Organization", "same")[0] == 1  # type: ignore[index]
    changed = _ndjson(tmp_path / "changed.ndjson", [{**org, "name": "Helsestasjonen sentrum"}])
    run_import(settings, [str(changed)], progress=False)
    version, body = _read(settings, "Organization", "same")  # type: ignore[misc]
    assert (version, body["name"]) == (2, "Helsestasjonen sentrum")


def test_ndjson_import_is_audited_with_the_patients_it_wrote(settings: Settings,
                                                              tmp_path: Path) -> None:
    """A bulk load is a write like any other (helsepersonelloven § 21a): each chunk leaves a
    `create` record naming the patients whose records it filled, and the log still verifies."""
    from akson.api.fhir.paging import audit_key
    from akson.store import audit_log

    patients = [{"resourceType": "Patient", "id": f"imp-{i}"} for i in range(3)]
    observations = [{"resourceType": "Observation", "id": f"imp-o-{i}", "status": "final",
                     "code": {"text": "puls"}, "subject": {"reference": f"Patient/imp-{i}"}}
                    for i in range(3)]
    path = _ndjson(tmp_path / "data.ndjson", [*patients, *observations])
    assert run_import(settings, [str(path)], progress=False).loaded == 6

    async def logged() -> tuple[dict[str, list[str]], bool]:
        db = connect(settings.database_url, pool_size=1)
        await db.open()
        try:
            async with db.transaction(write=False) as tx:
                seen = {f"imp-{i}": [r.entry.subtype for r in await audit_log.patient_log(
                    tx, f"imp-{i}")] for i in range(3)}
            report = await audit_log.verify(db, audit_key(settings.database_url))
            return seen, report.ok
        finally:
            await db.close()

    seen, ok = asyncio.run(logged())
    assert ok
    assert all("create" in subtypes for subtypes in seen.values()), seen


def test_bulk_import_refuses_results_and_keeps_a_citizens_nors(settings: Settings,
                                                              tmp_path: Path) -> None:
    """What a REST write may not do, a bulk load may not either: results come from the results
    service only (the line is rejected with the reason), and an id stored already is an update
    with a write's checks — only the citizen lifts NORS, so the import stops, changing nothing."""
    from akson.access.policy import NORS
    from akson.fhir.outcome import FhirError
    from akson.results.model import ORIGIN_RESULTS, ORIGIN_SYSTEM

    nors = {"system": NORS[0], "code": NORS[1]}
    obs = {"resourceType": "Observation", "id": "nors-1", "status": "final",
           "code": {"text": "puls"}, "meta": {"security": [nors]}}
    result = {**obs, "id": "res-1", "meta": {"tag": [{"system": ORIGIN_SYSTEM,
                                                       "code": ORIGIN_RESULTS}]}}
    summary = run_import(settings, [str(_ndjson(tmp_path / "a.ndjson", [obs, result]))],
                         progress=False)
    assert summary.loaded == 1
    assert [w for w, _ in summary.rejected] == [f"{tmp_path / 'a.ndjson'}:2"]
    assert "results service" in summary.rejected[0][1]
    lifted = {**obs, "meta": {}, "status": "amended"}
    with pytest.raises(FhirError) as err:
        run_import(settings, [str(_ndjson(tmp_path / "b.ndjson", [lifted]))], progress=False)
    assert err.value.status == 403
    version, body = _read(settings, "Observation", "nors-1")  # type: ignore[misc]
    assert (version, body["status"], body["meta"]["security"]) == (1, "final", [nors])
