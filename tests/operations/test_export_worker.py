"""The export worker on 50,000 resources: flat memory, throughput, file splitting, cancel, restart.

These drive `ExportWorker` directly on a database of their own (no HTTP server), so tracemalloc
sees the export job and nothing else.
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.conftest import run_on_store
from tests.operations.conftest import fresh_database

from akson.export_worker import ExportWorker
from akson.fhir import dates, shaping
from akson.store import export as store_export
from akson.store.bulk import bulk_create
from akson.store.repository import ResourceStore
from akson.store.search_sql import Where

pytestmark = pytest.mark.slow

N_OBSERVATIONS = 50_000
N_PATIENTS = 100


def _observation(i: int) -> dict:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/p{i % N_PATIENTS}"},
            "valueQuantity": {"value": 60 + i % 40, "unit": "/min"}}


@pytest.fixture(scope="module")
def loaded(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database with 100 patients and 50,000 observations, bulk-loaded."""
    folder = tmp_path_factory.mktemp(f"bulk-{backend}")
    for url in fresh_database(backend, folder):

        async def load(store: ResourceStore) -> None:
            async with store.session(write=True, bulk=True) as s:
                await bulk_create(s, [("Patient", f"p{i}", {"resourceType": "Patient"})
                                      for i in range(N_PATIENTS)], assume_new=True)
            for start in range(0, N_OBSERVATIONS, 5000):
                async with store.session(write=True, bulk=True) as s:
                    await bulk_create(s, [("Observation", f"o{i}", _observation(i))
                                          for i in range(start, start + 5000)], assume_new=True)

        run_on_store(url, load, pool_size=4)
        yield url


async def _queue(store: ResourceStore, params: dict[str, Any]) -> str:
    full = {"level": "system", "types": None, "since": None, "filters": {},
            "base_url": "http://akson.test/fhir", **params}
    async with store.session(write=True) as s:
        return await store_export.create_job(s, "http://akson.test/fhir/$export",
                                             orjson.dumps(full).decode(), dates.now_us())


async def _job(store: ResourceStore, job_id: str) -> store_export.Job:
    async with store.session(write=False) as s:
        job = await store_export.get_job(s, job_id)
    assert job is not None
    return job


def _count_lines(folder: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for path in sorted(folder.iterdir()):
        with path.open("rb") as f:
            out[path.name] = sum(1 for _ in f)
    return out


def test_memory_stays_flat_and_throughput(loaded, backend, tmp_path, capsys):
    async def work(store: ResourceStore) -> tuple[float, int, int, str]:
        # Untraced run for throughput (tracemalloc slows every allocation down).
        worker = ExportWorker(store, tmp_path / "a", chunk_rows=5000)
        timed = await _queue(store, {"types": ["Observation"]})
        start = time.perf_counter()
        assert await worker.run_once()
        seconds = time.perf_counter() - start
        # Traced run for the peak: growth above what was allocated before the job started.
        worker = ExportWorker(store, tmp_path / "b", chunk_rows=5000)
        traced = await _queue(store, {"types": ["Observation"]})
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            assert await worker.run_once()
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        job = await _job(store, timed)
        assert job.status == "completed", job.error
        assert (await _job(store, traced)).status == "completed"
        return seconds, peak, len(job.manifest or ""), timed

    seconds, peak, _, job_id = run_on_store(loaded, work, pool_size=4)
    folder = tmp_path / "a" / job_id
    lines = _count_lines(folder)
    assert lines == {"Observation-1.ndjson": N_OBSERVATIONS}
    size = sum(p.stat().st_size for p in folder.iterdir())
    rate = N_OBSERVATIONS / seconds
    with capsys.disabled():
        print(f"\n[export {backend}] {N_OBSERVATIONS} resources ({size / 1e6:.1f} MB NDJSON) in "
              f"{seconds:.2f} s = {rate:,.0f} resources/s; tracemalloc peak growth "
              f"{peak / 1e6:.1f} MB")
    assert peak < 50 * 1024 * 1024
    assert peak < size, "the job never held the whole export"


def _no_restricted(alias: str, res_type: str) -> Where:
    """An access predicate of the kind the gate adds: no row labelled NORS (Volven 9603)."""
    return Where([f"NOT EXISTS (SELECT 1 FROM sp_token sec WHERE sec.res_pk = {alias}.pk "
                  "AND sec.res_type = %s AND sec.param = '_security' AND sec.code = %s)"],
                 [res_type, "NORS"])


def test_memory_stays_flat_when_subsetting_and_restricting(loaded, backend, tmp_path, capsys):
    """`_elements` parses and re-serialises every resource, and the access predicate runs in
    every chunk's query: the worker's peak (tracemalloc) still does not grow with the export."""
    async def work(store: ResourceStore) -> tuple[int, str]:
        async def access(job: store_export.Job) -> store_export.ExportAccess:
            return store_export.ExportAccess(scope=_no_restricted)

        worker = ExportWorker(store, tmp_path, chunk_rows=2000, access=access)
        job_id = await _queue(store, {"types": ["Observation"],
                                      "elements": ["Observation.valueQuantity"]})
        # Once per process, not per export: the R4 schema `_elements` reads mandatory elements
        # from (a server has it loaded already, for validation).
        shaping.mandatory("Observation")
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            assert await worker.run_once()
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        job = await _job(store, job_id)
        assert job.status == "completed", job.error
        return peak, job_id

    peak, job_id = run_on_store(loaded, work, pool_size=4)
    path = tmp_path / job_id / "Observation-1.ndjson"
    lines = path.read_bytes().splitlines()
    assert len(lines) == N_OBSERVATIONS >= 20_000
    first = orjson.loads(lines[0])
    assert set(first) == {"resourceType", "id", "meta", "status", "code", "valueQuantity"}
    assert "subject" not in first
    with capsys.disabled():
        print(f"\n[export {backend}] {N_OBSERVATIONS} subset and restricted: tracemalloc peak "
              f"growth {peak / 1e6:.1f} MB for {path.stat().st_size / 1e6:.1f} MB NDJSON")
    assert peak < 24 * 1024 * 1024
    assert peak < path.stat().st_size, "the job never held the whole export"


def test_files_split_and_lines_are_the_stored_resources(loaded, tmp_path):
    async def work(store: ResourceStore) -> tuple[str, dict]:
        worker = ExportWorker(store, tmp_path, chunk_rows=3000, file_lines=20_000)
        job_id = await _queue(store, {"level": "patient", "types": ["Observation", "Patient"]})
        assert await worker.run_once()
        job = await _job(store, job_id)
        assert job.status == "completed", job.error
        async with store.session(write=False) as s:
            sample = {rid: await s.read("Observation", rid) for rid in ("o0", "o19999", "o49999")}
        return job_id, {"manifest": orjson.loads(job.manifest or "{}"), "sample": sample}

    job_id, got = run_on_store(loaded, work, pool_size=4)
    folder = tmp_path / job_id
    assert _count_lines(folder) == {"Observation-1.ndjson": 20_000, "Observation-2.ndjson": 20_000,
                                    "Observation-3.ndjson": 10_000, "Patient-1.ndjson": N_PATIENTS}
    assert [(o["type"], o["count"], o["url"].rsplit("/", 1)[-1]) for o in got["manifest"]["output"]
            ] == [("Observation", 20_000, "Observation-1.ndjson"),
                  ("Observation", 20_000, "Observation-2.ndjson"),
                  ("Observation", 10_000, "Observation-3.ndjson"),
                  ("Patient", N_PATIENTS, "Patient-1.ndjson")]
    ids: list[str] = []
    by_id: dict[str, bytes] = {}
    for name in ("Observation-1.ndjson", "Observation-2.ndjson", "Observation-3.ndjson"):
        for line in (folder / name).read_bytes().splitlines():
            rid = orjson.loads(line)["id"]
            ids.append(rid)
            by_id[rid] = line
    assert sorted(ids) == sorted(f"o{i}" for i in range(N_OBSERVATIONS))  # each exactly once
    for rid, stored in got["sample"].items():
        assert by_id[rid] == stored.content


def test_cancel_while_running_stops_and_removes_files(loaded, tmp_path):
    async def work(store: ResourceStore) -> tuple[bool, str]:
        worker = ExportWorker(store, tmp_path, chunk_rows=500)
        job_id = await _queue(store, {"types": ["Observation"]})
        task = asyncio.create_task(worker.run_once())
        for _ in range(100_000):  # until the first chunk is on disk (bounded)
            await asyncio.sleep(0)
            job = await _job(store, job_id)
            if job.progress and job.progress.startswith("Observation:"):
                break
        else:
            raise AssertionError("the job never reported progress")
        assert (tmp_path / job_id / "Observation-1.ndjson").exists()
        async with store.session(write=True) as s:
            assert await store_export.cancel_job(s, job_id, dates.now_us())
        ran = await task
        job = await _job(store, job_id)
        assert job.status == "cancelled" and job.manifest is None
        assert job.progress is not None and "50000" not in job.progress
        return ran, job_id

    ran, job_id = run_on_store(loaded, work, pool_size=4)
    assert ran
    assert not (tmp_path / job_id).exists()


def test_stopped_server_requeues_and_a_stale_job_is_taken_over(loaded, tmp_path):
    async def work(store: ResourceStore) -> None:
        first = ExportWorker(store, tmp_path, chunk_rows=500, poll_seconds=0.01)
        job_id = await _queue(store, {"types": ["Observation"]})
        first.start()
        for _ in range(100_000):
            await asyncio.sleep(0)
            if ((await _job(store, job_id)).progress or "").startswith("Observation:"):
                break
        await first.stop()  # a graceful shutdown hands the job back
        job = await _job(store, job_id)
        assert job.status == "queued" and job.worker is None
        # A worker that claimed the job and then died: its heartbeat goes stale.
        async with store.session(write=True) as s:
            claimed = await store_export.claim_job(s, "dead-worker", dates.now_us(), 0)
        assert claimed is not None and claimed.id == job_id
        patient = await _queue(store, {"types": ["Patient"]})
        second = ExportWorker(store, tmp_path, chunk_rows=5000, stale_seconds=0)
        assert await second.run_once()  # takes over the stale job first (oldest)
        assert await second.run_once()  # then the Patient job
        for jid, count in ((job_id, N_OBSERVATIONS), (patient, N_PATIENTS)):
            job = await _job(store, jid)
            assert job.status == "completed", job.error
            assert sum(o["count"] for o in orjson.loads(job.manifest or "{}")["output"]) == count
        # The dead worker, should it wake, has lost the job.
        async with store.session(write=True) as s:
            assert not await store_export.beat(s, job_id, "dead-worker", "x", dates.now_us())
        # Restarted from scratch: every line once.
        lines = (tmp_path / job_id / "Observation-1.ndjson").read_bytes().splitlines()
        assert len(lines) == len({orjson.loads(line)["id"] for line in lines}) == N_OBSERVATIONS

    run_on_store(loaded, work, pool_size=4)
