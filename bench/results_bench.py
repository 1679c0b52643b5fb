"""Results service benchmark: 10M lab Observations for 100k persons, patient lookups, HL7 ingest.

Phases (see bench/README.md, "Results service"):
1. load: Patients, DiagnosticReports and Observations (`results_data`) bulk-copied into
   `akson_results_bench` on PostgreSQL, prepared in worker processes while this process streams
   the COPY lines (`akson.store.bulk`, as `akson import` does); then ANALYZE.
2. lookup: `akson serve --workers 2`, N keep-alive clients, three patient-scoped query shapes
   against the results base (`/results/fhir`, or `/fhir` while the results service is missing).
3. ingest: HL7 v2 ORU^R01 messages POSTed to `/results/ingest`; messages per minute.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import random
import shlex
import shutil
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import orjson

import loadgen
from akson.fhir import dates
from akson.fhir.searchparams import SearchParamRegistry
from akson.results.model import NLK_SYSTEM
from akson.store.bulk import CopyReady, allocate_pks, bulk_create_copy_ready
from akson.store.database import connect
from akson.store.repository import ResourceStore
from results_data import CORE, OSLO, Generator, obs_count, patient_id, resources_of, verify
from serverproc import PgTarget, ServerProcess, free_port, pg_version, run_upgrade

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
RECENT_P95_MS = 20.0
INGEST_PER_MIN = 2000.0
HL7_TYPE = "x-application/hl7-v2+er7"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--persons", type=int, default=100_000)
    ap.add_argument("--observations", type=int, default=10_000_000)
    ap.add_argument("--phases", default="load,lookup,ingest",
                    help="comma-separated subset of load,lookup,ingest")
    ap.add_argument("--base", default="/results/fhir", help="FHIR base of the lookups")
    ap.add_argument("--ingest-path", default="/results/ingest")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2, help="server workers")
    ap.add_argument("--gen-workers", type=int, default=max(1, os.cpu_count() or 2),
                    help="processes preparing COPY lines")
    ap.add_argument("--requests", type=int, default=1000, help="measured requests per shape")
    ap.add_argument("--warmup", type=int, default=50, help="unmeasured requests per shape")
    ap.add_argument("--load-minutes", type=float, default=0,
                    help="stop loading after this long (whole persons; --reuse resumes later)")
    ap.add_argument("--ingest-seconds", type=float, default=60.0)
    ap.add_argument("--ingest-count", type=int, default=0, help="stop after N messages (0: time)")
    ap.add_argument("--check-every", type=int, default=10, help="check one response in N")
    ap.add_argument("--verify-every", type=int, default=2000,
                    help="compare one generated resource in N with the store's own prepare()")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--db", default="akson_results_bench")
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    ap.add_argument("--reuse", action="store_true",
                    help="keep what the database holds, load only what is missing (resumes an "
                         "interrupted load), and keep the database afterwards")
    ap.add_argument("--server-cmd", default=str(REPO / ".venv" / "bin" / "akson"))
    ap.add_argument("--pg-host", default="127.0.0.1")
    ap.add_argument("--pg-port", type=int, default=5432)
    ap.add_argument("--pg-user", default="postgres")
    ap.add_argument("--results-dir", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args(argv)
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    return args


def _admin(pg: PgTarget, sql: str) -> Any:
    import psycopg

    with psycopg.connect(pg.conninfo("postgres"), autocommit=True) as conn:
        cur = conn.execute(sql)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def _sql(pg: PgTarget, db: str, sql: str) -> Any:
    import psycopg

    with psycopg.connect(pg.conninfo(db), autocommit=True) as conn:
        cur = conn.execute(sql)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def machine() -> dict[str, Any]:
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    return {"nproc": os.cpu_count(), "ram_gb": round(mem_kb / 1024 / 1024, 1)}


def counts(pg: PgTarget, db: str) -> dict[str, int]:
    rows = _sql(pg, db, "SELECT res_type, count(*) FROM resource WHERE res_type IN "
                        "('Patient', 'Observation', 'DiagnosticReport') GROUP BY res_type")
    return {t: int(n) for t, n in rows}


# ------------------------------------------------------------------ load


def load_anchor(pg: PgTarget, args: argparse.Namespace, *, fresh: bool) -> dt.datetime:
    """The "now" the data was generated against: report dates count back from it, so a later
    run must regenerate with the same one to know what the database holds. Kept as the
    database's comment."""
    if not fresh:
        note = _note(pg, args.db)
        if "anchor" in note:
            return dt.datetime.fromisoformat(note["anchor"])
        print("  no anchor stored with the database: checks near the cutoff date may be off",
              flush=True)
    anchor = dt.datetime.now(OSLO)
    if fresh:
        _set_note(pg, args.db, {"anchor": anchor.isoformat(), "seed": args.seed,
                                "persons": args.persons, "observations": args.observations})
    return anchor


_gen: dict[str, Any] = {}


def _init_worker(seed: int, persons: int, observations: int, anchor: str, every: int) -> None:
    _gen["g"] = Generator(seed, persons, observations, dt.datetime.fromisoformat(anchor))
    _gen["every"] = every


def _make_block(first: int, last: int, pks: list[int]) -> list[CopyReady]:
    """In a worker: persons [first, last) as COPY lines; the first resource of the block and
    one in `every` are checked against the store's own prepare()."""
    gen: Generator = _gen["g"]
    every: int = _gen["every"]
    now = dates.now_us()
    out: list[CopyReady] = []
    it = iter(pks)
    for person in range(first, last):
        pat, items = gen.person(person)
        out.append(gen.exact(patient_id(gen.seed, person), pat, next(it), now))
        for res_id, resource in items:
            pk = next(it)
            if pk % every == 0 or len(out) == 1:
                verify(gen, res_id, resource, pk, now)
            out.append(gen.ready(res_id, resource, pk, now))
    return out


async def load(args: argparse.Namespace, url: str, start: int, anchor: dt.datetime
               ) -> dict[str, Any]:
    """Load persons [start, persons); one transaction per block of whole persons."""
    per_person = max(1, args.observations // args.persons)
    block = max(1, 1000 // (per_person + per_person // 8 + 1))
    todo = sum(resources_of(obs_count(p, args.persons, args.observations))
               for p in range(start, args.persons))
    db = connect(url, pool_size=2)
    await db.open()
    store = ResourceStore(db, SearchParamRegistry.default().copy())
    loop = asyncio.get_running_loop()
    ahead: deque[Future[list[CopyReady]]] = deque()
    done = written = 0
    began = last_print = time.perf_counter()

    async def write(items: list[CopyReady]) -> None:
        nonlocal done, last_print, written
        async with store.session(write=True, bulk=True) as s:
            await bulk_create_copy_ready(s, items)
        done += len(items)
        written += 1
        if written & (written - 1) == 0:  # blocks 1, 2, 4, 8, …: fresh statistics, so the
            # id check in bulk_create_copy_ready probes the unique index, not a seq scan
            async with store.session(write=True) as s:
                await s.tx.execute("ANALYZE resource")
        now = time.perf_counter()
        if now - last_print >= 10 or done == todo:
            last_print = now
            rate = done / (now - began)
            eta = (todo - done) / rate if rate else 0
            print(f"  {done:,}/{todo:,} resources  {rate:,.0f}/s  eta {eta / 60:.1f} min",
                  flush=True)

    initargs = (args.seed, args.persons, args.observations, anchor.isoformat(), args.verify_every)
    try:
        with ProcessPoolExecutor(max_workers=args.gen_workers, initializer=_init_worker,
                                 initargs=initargs) as pool:
            stop_at = began + args.load_minutes * 60 if args.load_minutes else math.inf
            for first in range(start, args.persons, block):
                if time.perf_counter() >= stop_at:
                    print(f"  --load-minutes {args.load_minutes} reached: stopping after person "
                          f"{first:,} (--reuse resumes from there)", flush=True)
                    break
                last = min(args.persons, first + block)
                n = sum(resources_of(obs_count(p, args.persons, args.observations))
                        for p in range(first, last))
                async with store.session(write=False) as s:
                    pks = await allocate_pks(s, n)
                ahead.append(pool.submit(_make_block, first, last, pks))
                if len(ahead) > args.gen_workers + 1:
                    await write(await asyncio.wrap_future(ahead.popleft(), loop=loop))
            while ahead:
                await write(await asyncio.wrap_future(ahead.popleft(), loop=loop))
    finally:
        await db.close()
    took = time.perf_counter() - began
    return {"resources": done, "seconds": round(took, 1),
            "resources_per_s": round(done / took) if took else 0}


# ------------------------------------------------------------------ lookups


def _pct(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered), math.ceil(pct * len(ordered) / 100)) - 1)]


class Shapes:
    """The three query shapes, their paths and the checks of their answers."""

    KEYS = ("recent", "trend", "reports")
    DESC = {
        "recent": "Observation?patient=X&date=ge{today-2y}&_count=100",
        "trend": "Observation?patient=X&code=NLK\\|code&_sort=date",  # \\| for markdown
        "reports": "DiagnosticReport?patient=X&date=ge{today-2y}&_include=DiagnosticReport:result",
    }

    def __init__(self, gen: Generator, base: str, persons: int) -> None:
        self.gen, self.base, self.persons = gen, base, persons
        today = dt.datetime.now(OSLO).date()
        self.cutoff = today.replace(year=today.year - 2) if not (today.month == 2 and today.day == 29) \
            else today.replace(year=today.year - 2, day=28)

    def path(self, key: str, rng: random.Random) -> tuple[str, Any]:
        person = rng.randrange(self.persons)
        pid = patient_id(self.gen.seed, person)
        if key == "recent":
            return (f"{self.base}/Observation?patient={pid}&date=ge{self.cutoff}&_count=100",
                    (person, pid, None))
        if key == "trend":
            code = rng.choice(CORE).code
            return (f"{self.base}/Observation?patient={pid}&code={NLK_SYSTEM}%7C{code}&_sort=date",
                    (person, pid, code))
        return (f"{self.base}/DiagnosticReport?patient={pid}&date=ge{self.cutoff}"
                f"&_include=DiagnosticReport:result", (person, pid, None))

    def check(self, key: str, ctx: Any, body: bytes) -> str | None:
        """None if the answer is right for the generated data, else what is wrong."""
        person, pid, code = ctx
        bundle = orjson.loads(body)
        entries = [e["resource"] for e in bundle.get("entry") or []]
        more = any(lk.get("relation") == "next" for lk in bundle.get("link") or [])
        _, items = self.gen.person(person)
        lo, hi = str(self.cutoff - dt.timedelta(days=1)), str(self.cutoff + dt.timedelta(days=1))
        subject = f"Patient/{pid}"
        ours = {res_id for res_id, _ in items}
        if key in ("recent", "trend"):
            for r in entries:
                if r.get("resourceType") != "Observation" or r.get("subject", {}).get("reference") \
                        != subject:
                    return f"{key}: entry not an Observation of {subject}"
            if key == "recent":
                if any(r["effectiveDateTime"][:10] < lo for r in entries):
                    return "recent: an Observation older than the cutoff"
                most = sum(1 for _, r in items if r["resourceType"] == "Observation"
                           and r["effectiveDateTime"][:10] >= lo)
                least = sum(1 for _, r in items if r["resourceType"] == "Observation"
                            and r["effectiveDateTime"][:10] > hi)
                n = sum(1 for r in entries if r["id"] in ours)  # not what ingest added
                if n > most or (len(entries) < 100 and n < least):
                    return f"recent: {n} Observations, expected {least}–{most} (page 100)"
                return None
            codes = {r["code"]["coding"][0]["code"] for r in entries}
            if codes - {code}:
                return f"trend: other codes {sorted(codes - {code})}"
            when = [r["effectiveDateTime"] for r in entries]
            if [dt.datetime.fromisoformat(w) for w in when] != sorted(
                    dt.datetime.fromisoformat(w) for w in when):
                return "trend: not sorted by date"
            want = sum(1 for _, r in items if r["resourceType"] == "Observation"
                       and r["code"]["coding"][0]["code"] == code)
            n = sum(1 for r in entries if r["id"] in ours)
            if not more and n != want:
                return f"trend: {n} Observations, expected {want}"
            return None
        modes = [e.get("search", {}).get("mode") for e in bundle.get("entry") or []]
        matched = [r for r, m in zip(entries, modes, strict=True) if m != "include"]
        included = {r["id"] for r, m in zip(entries, modes, strict=True) if m == "include"}
        for r in matched:
            if r.get("resourceType") != "DiagnosticReport" or r["subject"]["reference"] != subject:
                return f"reports: match not a DiagnosticReport of {subject}"
            if r["effectiveDateTime"][:10] < lo:
                return "reports: a report older than the cutoff"
        named = {ref["reference"][12:] for r in matched for ref in r.get("result", [])}
        if named != included:
            return f"reports: {len(included)} included Observations, the reports name {len(named)}"
        expect = sum(1 for _, r in items if r["resourceType"] == "DiagnosticReport"
                     and r["effectiveDateTime"][:10] > hi)
        if not more and len(matched) < expect:
            return f"reports: {len(matched)} reports, expected at least {expect}"
        return None


async def run_shape(key: str, shapes: Shapes, args: argparse.Namespace, rng: random.Random
                    ) -> dict[str, Any]:
    jobs = [shapes.path(key, rng) for _ in range(args.warmup + args.requests)]
    queue = iter(enumerate(jobs))
    lat: list[float] = []
    errors: list[str] = []
    failures: list[str] = []
    sizes: list[int] = []

    async def client() -> None:
        conn = loadgen.Connection(HOST, args.port)
        try:
            for i, (path, ctx) in queue:
                raw = loadgen.build_request("GET", path, f"{HOST}:{args.port}")
                t0 = time.perf_counter()
                resp = await conn.send(raw)
                took = (time.perf_counter() - t0) * 1000
                if i >= args.warmup:
                    lat.append(took)
                if resp.status != 200:
                    errors.append(f"{resp.status} {path}: {resp.body[:200]!r}")
                    continue
                if i % args.check_every == 0:
                    sizes.append(len(orjson.loads(resp.body).get("entry") or []))
                    why = shapes.check(key, ctx, resp.body)
                    if why:
                        failures.append(why)
        finally:
            await conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(args.clients)))
    wall = time.perf_counter() - t0
    return {"key": key, "query": Shapes.DESC[key], "n": len(lat), "errors": len(errors),
            "first_error": errors[0] if errors else None, "checked": len(sizes),
            "check_failures": len(failures), "first_check_failure": failures[0] if failures else None,
            "mean_entries": round(sum(sizes) / len(sizes), 1) if sizes else None,
            "p50_ms": round(_pct(lat, 50), 1), "p95_ms": round(_pct(lat, 95), 1),
            "p99_ms": round(_pct(lat, 99), 1), "req_per_s": round(len(jobs) / wall, 1)}


# ------------------------------------------------------------------ ingestion


async def ingest(gen: Generator, args: argparse.Namespace, persons: int) -> dict[str, Any]:
    """POST ORU^R01 messages with `args.clients` clients; messages per minute."""
    from results_data import oru_r01

    host = f"{HOST}:{args.port}"
    counter = iter(range(10**9))
    lat: list[float] = []
    errors: list[str] = []
    not_aa: list[str] = []
    auth = loadgen.EXTRA_HEADERS.get("Authorization", "")
    stamp = int(time.time())
    deadline = time.perf_counter() + args.ingest_seconds
    rng = random.Random(args.seed + stamp)

    def request(n: int) -> bytes:
        body = oru_r01(gen, rng.randrange(persons), stamp * 1000 + n, dt.datetime.now(OSLO))
        head = (f"POST {args.ingest_path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n"
                f"Content-Type: {HL7_TYPE}\r\nContent-Length: {len(body)}\r\n\r\n")
        return head.encode() + body

    async def client() -> None:
        conn = loadgen.Connection(HOST, args.port)
        try:
            for n in counter:
                if (args.ingest_count and n >= args.ingest_count) or \
                        (not args.ingest_count and time.perf_counter() >= deadline):
                    return
                raw = request(n)
                t0 = time.perf_counter()
                resp = await conn.send(raw)
                lat.append((time.perf_counter() - t0) * 1000)
                if resp.status != 200:
                    errors.append(f"{resp.status}: {resp.body[:300]!r}")
                elif b"MSA|AA" not in resp.body and b"MSA|CA" not in resp.body:
                    not_aa.append(resp.body[:300].decode(errors="replace"))
        finally:
            await conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(args.clients)))
    wall = time.perf_counter() - t0
    ok = len(lat) - len(errors)
    return {"messages": len(lat), "ok": ok, "errors": len(errors),
            "first_error": errors[0] if errors else None, "not_accepted": len(not_aa),
            "first_not_accepted": not_aa[0] if not_aa else None, "seconds": round(wall, 1),
            "messages_per_min": round(ok / wall * 60) if wall else 0,
            "p50_ms": round(_pct(lat, 50), 1), "p95_ms": round(_pct(lat, 95), 1),
            "p99_ms": round(_pct(lat, 99), 1)}


def probe_ingest(gen: Generator, args: argparse.Namespace) -> str | None:
    import httpx

    from results_data import oru_r01

    body = oru_r01(gen, 0, 999_999_999, dt.datetime.now(OSLO))
    resp = httpx.post(f"http://{HOST}:{args.port}{args.ingest_path}", content=body, timeout=60,
                      headers={"Content-Type": HL7_TYPE, **loadgen.EXTRA_HEADERS})
    if resp.status_code == 200:
        return None
    return f"POST {args.ingest_path} gave {resp.status_code}: {resp.text[:200]}"


# ------------------------------------------------------------------ main


def serve_phases(args: argparse.Namespace, pg: PgTarget, cmd: list[str], anchor: dt.datetime,
                 persons: int, result: dict[str, Any]) -> None:
    """Start the server and run the lookup and ingest phases that were asked for."""
    import httpx

    from scale import system_token

    key_dir = tempfile.mkdtemp(prefix="akson-results-bench-keys-")
    env = {**os.environ, "AKSON_DATABASE_URL": pg.url(args.db), "AKSON_IDP_KEY_DIR": key_dir,
           "AKSON_IDP_ACCESS_TOKEN_SECONDS": "86400"}
    args.port = free_port()
    server = ServerProcess(cmd, env, HOST, args.port, args.workers)
    gen = Generator(args.seed, args.persons, args.observations, anchor)
    try:
        server.wait_healthy()
        origin = f"http://{HOST}:{args.port}"
        loadgen.EXTRA_HEADERS["Authorization"] = "Bearer " + system_token(origin, Path(key_dir))
        if "lookup" in args.phases:
            base = args.base
            probe = httpx.get(f"{origin}{base}/Observation?_count=1", timeout=60,
                              headers={"Accept": "application/fhir+json", **loadgen.EXTRA_HEADERS})
            if probe.status_code != 200 and base != "/fhir":
                print(f"  {base} answers {probe.status_code}: measuring /fhir (same store, same "
                      "query) instead", flush=True)
                base = "/fhir"
            result["lookup_base"] = base
            shapes = Shapes(gen, base, persons)
            rng = random.Random(args.seed)
            result["shapes"] = []
            for key in Shapes.KEYS:
                stats = asyncio.run(run_shape(key, shapes, args, rng))
                print(f"  {key:<8} p50 {stats['p50_ms']:7.1f}  p95 {stats['p95_ms']:7.1f}  "
                      f"p99 {stats['p99_ms']:7.1f} ms  {stats['req_per_s']:7.1f} req/s  "
                      f"entries≈{stats['mean_entries']}  errors {stats['errors']}  "
                      f"check failures {stats['check_failures']}/{stats['checked']}", flush=True)
                for what in ("first_error", "first_check_failure"):
                    if stats[what]:
                        print(f"    {what}: {stats[what]}", flush=True)
                result["shapes"].append(stats)
        if "ingest" in args.phases:
            why = probe_ingest(gen, args)
            if why:
                print(f"  skip ingest: {why}", flush=True)
                result["ingest"] = {"skipped": why}
            else:
                result["ingest"] = asyncio.run(ingest(gen, args, persons))
                print(f"  ingest: {result['ingest']}", flush=True)
    finally:
        server.stop()


def markdown(r: dict[str, Any]) -> str:
    m, s = r["machine"], r["sizes"]
    lines = [f"### Results service benchmark — {m['nproc']} CPUs, {m['ram_gb']} GB RAM, "
             f"{r['postgres']}", "",
             "| what | figure |", "|---|---|",
             f"| persons asked for | {r['args']['persons']:,} |",
             f"| stored | {s.get('Patient', 0):,} Patients, {s.get('DiagnosticReport', 0):,} "
             f"DiagnosticReports, {s.get('Observation', 0):,} Observations |",
             f"| database size | {r.get('db_size', '?')} |"]
    if "load" in r:
        ld = r["load"]
        lines.append(f"| load | {ld['resources']:,} resources in {ld['seconds']:,} s "
                     f"({ld['resources_per_s']:,}/s), ANALYZE {r.get('analyze_s', '?')} s |")
        if "index_build_s" in r:
            lines.append(f"| lookup indexes built after the load | {r['index_build_s']:,} s |")
    else:
        lines.append("| load | reused |")
    if r.get("shapes"):
        lines += ["", f"Lookups on `{r.get('lookup_base')}`, {r['args']['clients']} clients, "
                  f"{r['args']['workers']} server workers:", "",
                  "| shape | query | n | p50 ms | p95 ms | p99 ms | req/s | errors | checks failed |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for x in r["shapes"]:
            lines.append(f"| {x['key']} | `{x['query']}` | {x['n']} | {x['p50_ms']} | "
                         f"{x['p95_ms']} | {x['p99_ms']} | {x['req_per_s']} | {x['errors']} | "
                         f"{x['check_failures']}/{x['checked']} |")
        recent = next(x for x in r["shapes"] if x["key"] == "recent")
        lines.append(f"\nrecent p95 {recent['p95_ms']} ms: target ≤ {RECENT_P95_MS:.0f} ms "
                     f"{'met' if recent['p95_ms'] <= RECENT_P95_MS else 'NOT met'}")
    ing = r.get("ingest")
    if ing and "skipped" in ing:
        lines.append(f"\ningest skipped: {ing['skipped']}")
    elif ing:
        lines.append(f"\ningest: {ing['ok']:,} ORU^R01 in {ing['seconds']} s = "
                     f"{ing['messages_per_min']:,} messages/min (target ≥ {INGEST_PER_MIN:,.0f}), "
                     f"p50/p95/p99 {ing['p50_ms']}/{ing['p95_ms']}/{ing['p99_ms']} ms, "
                     f"errors {ing['errors']}, not AA {ing['not_accepted']}")
    return "\n".join(lines)


#: Disk per stored resource on PostgreSQL after a first load with deferred indexes (measured:
#: the JSON once, ~19 index rows per Observation; 7,200 before ADR 0009 and deferred indexes).
BYTES_PER_RESOURCE = 5_200


def _drop_lookup_indexes(pg: PgTarget, db: str) -> list[tuple[str, str]]:
    """A first load into empty tables runs without the lookup indexes (`ix_*`) and builds them
    afterwards: a sorted build is several times faster than growing a B-tree row by row, and
    leaves it compact. Primary keys and unique constraints stay: the loader checks ids
    against them. Returns (name, definition) of what was dropped, also kept in the database's
    comment until they are built, so a run that was killed meanwhile builds them next time."""
    dropped = [(str(n), str(d)) for n, d in _sql(
        pg, db, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                "AND indexname LIKE 'ix\\_%' ORDER BY indexname")]
    _set_note(pg, db, {**_note(pg, db), "deferred_indexes": dropped})
    for name, _ in dropped:
        _sql(pg, db, f'DROP INDEX "{name}"')
    return dropped


def _note(pg: PgTarget, db: str) -> dict[str, Any]:
    """The database's comment: what `load_anchor` and `_drop_lookup_indexes` keep there."""
    rows = _admin(pg, "SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                      f"WHERE datname = '{db}'")
    return json.loads(rows[0][0]) if rows and rows[0][0] else {}


def _set_note(pg: PgTarget, db: str, note: dict[str, Any]) -> None:
    text = json.dumps(note).replace("'", "''")
    _admin(pg, f"COMMENT ON DATABASE \"{db}\" IS '{text}'")


def _build_indexes(pg: PgTarget, db: str, indexes: list[tuple[str, str]]) -> float:
    """Build the indexes `_drop_lookup_indexes` dropped, with memory for the sorts; seconds."""
    import psycopg

    t0 = time.perf_counter()
    print(f"building {len(indexes)} lookup indexes …", flush=True)
    with psycopg.connect(pg.conninfo(db), autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET max_parallel_maintenance_workers = 1")
        for name, definition in indexes:
            began = time.perf_counter()
            conn.execute(definition.replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS", 1)
                         )  # type: ignore[arg-type]
            print(f"  index {name}: {time.perf_counter() - began:.0f} s", flush=True)
    note = _note(pg, db)
    note.pop("deferred_indexes", None)
    _set_note(pg, db, note)
    return time.perf_counter() - t0


def _disk_allows(pg: PgTarget, args: argparse.Namespace, start: int) -> bool:
    """Would loading the rest fit on the database's disk (with 15 % to spare)? Says so when not:
    the load is skipped and the other phases measure what is loaded."""
    (data_dir,), = _sql(pg, args.db, "SHOW data_directory")
    try:
        free = shutil.disk_usage(data_dir).free
    except OSError:  # a server on another machine: its disk is not ours to check
        return True
    need = BYTES_PER_RESOURCE * sum(resources_of(obs_count(p, args.persons, args.observations))
                                    for p in range(start, args.persons))
    if need <= free * 0.85:
        return True
    print(f"loading persons {start:,}–{args.persons:,} needs ≈ {need / 1e9:.0f} GB and the "
          f"database's disk has {free / 1e9:.0f} GB free: not loading; measuring on the "
          f"{start:,} persons loaded (fewer --persons/--observations load less)", flush=True)
    return False


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pg = PgTarget(args.pg_host, args.pg_port, args.pg_user)
    cmd = shlex.split(args.server_cmd)
    env = {**os.environ, "AKSON_DATABASE_URL": pg.url(args.db)}
    result: dict[str, Any] = {"args": {k: v for k, v in vars(args).items()
                                       if isinstance(v, (int, float, str, list))},
                              "machine": machine(), "postgres": pg_version(pg)[1]}
    print(f"{result['postgres']}; {result['machine']}", flush=True)
    exists = bool(_admin(pg, f"SELECT 1 FROM pg_database WHERE datname = '{args.db}'"))
    if not args.reuse and exists:
        _admin(pg, f'DROP DATABASE "{args.db}" WITH (FORCE)')
        exists = False
    if not exists:
        _admin(pg, f'CREATE DATABASE "{args.db}"')
    try:
        run_upgrade(cmd, env)
        have = counts(pg, args.db)
        start = have.get("Patient", 0)
        want = sum(obs_count(p, args.persons, args.observations) for p in range(start))
        # ≥: the ingest phase adds Observations of its own
        if have.get("Observation", 0) < want or start > args.persons:
            raise SystemExit(f"{args.db} holds {have} — not a prefix of this size and seed; "
                             "run without --reuse to start afresh")
        anchor = load_anchor(pg, args, fresh=start == 0)
        left = [tuple(i) for i in _note(pg, args.db).get("deferred_indexes", ())]
        if left and start > 0:  # an earlier load was killed before it built them
            _build_indexes(pg, args.db, left)  # type: ignore[arg-type]
        if start < args.persons and "load" in args.phases and not _disk_allows(pg, args, start):
            args.phases = [p for p in args.phases if p != "load"]
        if start < args.persons and "load" in args.phases:
            print(f"loading persons {start:,}–{args.persons:,} "
                  f"({args.observations:,} Observations in all) …", flush=True)
            deferred = _drop_lookup_indexes(pg, args.db) if start == 0 else []
            try:
                result["load"] = asyncio.run(load(args, pg.url(args.db), start, anchor))
            finally:
                if deferred:
                    result["index_build_s"] = round(_build_indexes(pg, args.db, deferred), 1)
            t0 = time.perf_counter()
            _sql(pg, args.db, "ANALYZE")
            result["analyze_s"] = round(time.perf_counter() - t0, 1)
        elif start < args.persons:
            print(f"{args.db} holds {start:,} of {args.persons:,} persons; lookups use those",
                  flush=True)
        else:
            print(f"{args.db} already holds {have}: no load", flush=True)
        stale = _sql(pg, args.db, "SELECT n_mod_since_analyze > n_live_tup / 10 OR last_analyze "
                                  "IS NULL AND last_autoanalyze IS NULL FROM pg_stat_user_tables "
                                  "WHERE relname = 'resource'")
        if "load" not in result and stale and stale[0][0]:
            print("statistics are stale (an interrupted load?): ANALYZE", flush=True)
            _sql(pg, args.db, "ANALYZE")
        result["sizes"] = counts(pg, args.db)
        result["db_size"] = _sql(pg, args.db, "SELECT pg_size_pretty(pg_database_size("
                                              "current_database()))")[0][0]
        persons = result["sizes"].get("Patient", 0)
        if persons and ({"lookup", "ingest"} & set(args.phases)):
            serve_phases(args, pg, cmd, anchor, persons, result)
    finally:
        if not args.keep and not args.reuse:
            _admin(pg, f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')
    print("\n" + markdown(result))
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"results-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"\nJSON: {out}")
    bad = any(x["errors"] or x["check_failures"] for x in result.get("shapes", []))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
