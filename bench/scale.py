"""Search latency at growing data sizes on PostgreSQL: load fast, then time ~20 query shapes."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from scale_queries import SHAPES, Sample, Shape, sample
from serverproc import PgTarget, RssSampler, ServerProcess, free_port, pg_version, run_upgrade

REPO = Path(__file__).resolve().parent.parent
_SYNTHEA = "corpora/synthea-r4/synthea_r4_smart_617_bundles.tar.xz"
SYNTHEA = REPO.parent / "shared" / _SYNTHEA  # ../shared beside the checkout, as CI lays it
if not SYNTHEA.exists():
    SYNTHEA = Path("/work/shared") / _SYNTHEA
DB = "akson_scale"
HOST = "127.0.0.1"
MB = 1024 * 1024
PER_PERSON = 14.2  # resources per `akson demo` person (measured)
PATIENT_P95_MS = 50.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="10000,100000", help="target resource counts, comma-separated")
    ap.add_argument("--db", choices=["postgres"], default="postgres")
    ap.add_argument("--requests", type=int, default=200, help="measured requests per shape")
    ap.add_argument("--warmup", type=int, default=10, help="unmeasured requests per shape")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--synthea", type=Path, default=SYNTHEA)
    ap.add_argument("--synthea-share", type=float, default=0.5,
                    help="share of a size below the Synthea set's 191k taken from it (rest: demo)")
    ap.add_argument("--synthea-as", choices=["ndjson", "bundles"], default="ndjson",
                    help="load Synthea as NDJSON (bulk import) or as transaction Bundles")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--server-cmd", default=str(REPO / ".venv" / "bin" / "akson"))
    ap.add_argument("--pg-host", default="127.0.0.1")
    ap.add_argument("--pg-port", type=int, default=5432)
    ap.add_argument("--pg-user", default="postgres")
    ap.add_argument("--keep", action="store_true", help="keep the last database")
    ap.add_argument("--reuse", action="store_true",
                    help="measure a kept database again, without loading, when it holds the size "
                         "asked for (within 10%%)")
    ap.add_argument("--db-name", default=DB,
                    help="the PostgreSQL database to load (dropped first) or reuse")
    ap.add_argument("--shapes", default="",
                    help="measure only these shapes (comma-separated keys) and skip the export")
    ap.add_argument("--results-dir", type=Path, default=REPO / "bench" / "results")
    return ap.parse_args(argv)


def _admin(pg: PgTarget, sql: str) -> None:
    import psycopg

    with psycopg.connect(pg.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def _kept_resources(pg: PgTarget) -> int | None:
    """How many live resources the kept database holds (None: there is none)."""
    if not _sql(pg, f"SELECT 1 FROM pg_database WHERE datname = '{DB}'", db="postgres"):
        return None
    try:
        return int(_sql(pg, "SELECT count(*) FROM resource WHERE NOT deleted")[0][0])
    except Exception:  # no schema yet: nothing to reuse
        return None


def _sql(pg: PgTarget, sql: str, db: str | None = None) -> Any:
    import psycopg

    with psycopg.connect(pg.conninfo(db or DB), autocommit=True) as conn:
        cur = conn.execute(sql)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


# ------------------------------------------------------------------ loading


def synthea_subset(tar_path: Path, budget: int, out: Path, as_ndjson: bool) -> tuple[int, int]:
    """Write Synthea bundles (in archive order) to `out` while they fit in `budget` resources.

    As NDJSON (one file per type, as a Bulk Data export would deliver them) the bundles'
    `urn:uuid:` references become `Type/id`: Synthea's ids are those uuids.
    """
    files = resources = 0
    handles: dict[str, Any] = {}
    try:
        with tarfile.open(tar_path, "r:xz") as tar:
            for member in tar:
                if not member.isfile() or not member.name.endswith(".json"):
                    continue
                raw = tar.extractfile(member).read()  # type: ignore[union-attr]
                entries = json.loads(raw).get("entry") or []
                n = len(entries)
                if resources + n > budget:
                    continue
                if as_ndjson:
                    _bundle_to_ndjson(entries, out, handles)
                else:
                    (out / f"{files:04d}.json").write_bytes(raw)
                files, resources = files + 1, resources + n
                if budget - resources < 50:
                    break
    finally:
        for handle in handles.values():
            handle.close()
    return files, resources


def _bundle_to_ndjson(entries: list[dict], out: Path, handles: dict[str, Any]) -> None:
    types = {e["fullUrl"]: e["resource"]["resourceType"] + "/" + e["resource"]["id"]
             for e in entries if "fullUrl" in e and "id" in e.get("resource", {})}
    for entry in entries:
        line = json.dumps(entry["resource"], separators=(",", ":"))
        line = re.sub(r'"reference":"(urn:uuid:[0-9a-f-]+)"',
                      lambda m: f'"reference":"{types.get(m.group(1), m.group(1))}"', line)
        rtype = entry["resource"]["resourceType"]
        if rtype not in handles:
            handles[rtype] = (out / f"{rtype}.ndjson").open("a")
        handles[rtype].write(line + "\n")


def timed(argv: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)) -> tuple[float, str]:
    """Run a command; (seconds, stdout). `akson import` exits 1 when it rejected something."""
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode not in ok:
        raise RuntimeError(f"{shlex.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return took, proc.stdout


def load(size: int, args: argparse.Namespace, cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Synthea first (all of it when the size allows), then `akson demo` up to the size."""
    info: dict[str, Any] = {"target": size}
    full = size >= 191_093
    budget = size if full else int(size * args.synthea_share)
    if budget and args.synthea.is_file():
        with tempfile.TemporaryDirectory(prefix="akson-scale-synthea-") as tmp:
            files, count = synthea_subset(args.synthea, budget, Path(tmp), args.synthea_as == "ndjson")
            print(f"  importing {files} Synthea bundles ({count} resources) as {args.synthea_as} …",
                  flush=True)
            took, out = timed([*cmd, "import", tmp], env, ok=(0, 1))
        found = re.search(r"Loaded (\d+) resources; rejected (\d+)", out)
        if found is None:
            raise RuntimeError(f"akson import printed no summary:\n{out[-2000:]}")
        loaded, rejected = int(found.group(1)), int(found.group(2))
        info["synthea"] = {"as": args.synthea_as, "files": files, "resources": loaded, "rejected": rejected,
                           "seconds": round(took, 1), "resources_per_s": round(loaded / took),
                           "first_rejections": out.splitlines()[1:4]}
        print(f"  akson import: {loaded} resources in {took:.1f} s = {loaded / took:.0f}/s", flush=True)
    remaining = size - info.get("synthea", {}).get("resources", 0)
    persons = max(20, round(remaining / PER_PERSON))
    municipalities = max(2, min(357, persons // 20_000))
    print(f"  akson demo --persons {persons} --municipalities {municipalities} …", flush=True)
    took, out = timed([*cmd, "demo", "--persons", str(persons), "--municipalities",
                       str(municipalities), "--seed", str(args.seed), "--no-progress"], env)
    loaded = int(re.search(r"persons, (\d+) resources", out).group(1))  # type: ignore[union-attr]
    info["demo"] = {"persons": persons, "municipalities": municipalities, "resources": loaded,
                    "seconds": round(took, 1), "resources_per_s": round(loaded / took)}
    print(f"  akson demo: {loaded} resources in {took:.1f} s = {loaded / took:.0f}/s", flush=True)
    return info


# ------------------------------------------------------------------ measuring


async def _walk(client: httpx.AsyncClient, path: str, pages: int) -> int:
    url: str | None = path
    for _ in range(pages):
        if url is None:
            break
        resp = await client.get(url)
        if resp.status_code != 200:
            return resp.status_code
        if pages == 1:
            return 200
        links = {lk["relation"]: lk["url"] for lk in resp.json().get("link", [])}
        url = links.get("next")
    return 200


async def run_shape(base: str, shape: Shape, data: Sample, args: argparse.Namespace,
                    rng: random.Random) -> dict[str, Any]:
    paths = [shape.make(rng, data) for _ in range(args.warmup + args.requests)]
    latencies: list[float] = []
    errors: list[str] = []
    queue = iter(enumerate(paths))

    async def worker() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=120,
                                     headers={"Accept": "application/fhir+json", **AUTH}) as client:
            for i, path in queue:
                start = time.perf_counter()
                status = await _walk(client, path, shape.pages)
                if i >= args.warmup:
                    latencies.append((time.perf_counter() - start) * 1000)
                if status != 200:
                    errors.append(f"{status} {path}")

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(args.clients)))
    wall = time.perf_counter() - start
    latencies.sort()
    return {"key": shape.key, "desc": shape.desc, "patient_scoped": shape.patient_scoped,
            "n": len(latencies), "errors": len(errors), "first_error": errors[0] if errors else None,
            "p50_ms": round(_pct(latencies, 50), 1), "p95_ms": round(_pct(latencies, 95), 1),
            "req_per_s": round(len(paths) / wall, 1)}


def _pct(values: list[float], pct: float) -> float:
    return values[min(len(values) - 1, int(len(values) * pct / 100))] if values else float("nan")


#: Headers every request carries: the built-in system client's token (set per server run).
AUTH: dict[str, str] = {}


def system_token(origin: str, key_dir: Path) -> str:
    """A `system/*.*` token of the server's built-in client (`akson token`'s flow)."""
    from akson.idp.clients import CLI_CLIENT_ID, cli_private_key
    from akson.idp_cli import fetch_token

    return str(fetch_token(origin, CLI_CLIENT_ID, cli_private_key(key_dir))["access_token"])


def probe(base: str, shape: Shape, data: Sample) -> str | None:
    """None if the shape works on this server, else why it is skipped."""
    path = shape.make(random.Random(1), data)
    resp = httpx.get(base + path, timeout=120, headers={"Accept": "application/fhir+json", **AUTH})
    if resp.status_code == 200:
        return None
    return f"GET {path} gave {resp.status_code}: {resp.text[:200]}"


def export(base: str, sampler: RssSampler) -> dict[str, Any]:
    """System $export: kick-off, poll until done, download every file counting NDJSON lines."""
    sampler.new_phase()
    start = time.perf_counter()
    with httpx.Client(timeout=600, headers=AUTH) as client:
        kick = client.get(f"{base}/$export", headers={"Prefer": "respond-async",
                                                     "Accept": "application/fhir+json"})
        if kick.status_code != 202:
            return {"error": f"kick-off gave {kick.status_code}: {kick.text[:200]}"}
        status_url = kick.headers["Content-Location"]
        for _ in range(36_000):  # ≤ 1 h at 0.1 s
            status = client.get(status_url)
            if status.status_code != 202:
                break
            time.sleep(0.1)
        if status.status_code != 200:
            return {"error": f"status gave {status.status_code}: {status.text[:200]}"}
        ready = time.perf_counter() - start
        lines = size = 0
        for item in status.json().get("output", []):
            with client.stream("GET", item["url"]) as resp:
                for chunk in resp.iter_bytes():
                    lines += chunk.count(b"\n")
                    size += len(chunk)
    total = time.perf_counter() - start
    sampler.sample()
    return {"resources": lines, "mb": round(size / MB, 1), "job_seconds": round(ready, 1),
            "total_seconds": round(total, 1), "lines_per_s": round(lines / total),
            "peak_rss_mb": round(sampler.phase_peak / MB, 1)}


def run_size(size: int, args: argparse.Namespace, pg: PgTarget, cmd: list[str]) -> dict[str, Any]:
    print(f"\n== {size:,} resources", flush=True)
    kept = _kept_resources(pg) if args.reuse else None
    reuse = kept is not None and abs(kept - size) <= size // 10
    if not reuse:
        _admin(pg, f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        _admin(pg, f'CREATE DATABASE "{DB}"')
    key_dir = tempfile.mkdtemp(prefix="akson-scale-keys-")
    env = {**os.environ, "AKSON_DATABASE_URL": pg.url(DB), "AKSON_IDP_KEY_DIR": key_dir,
           "AKSON_IDP_ACCESS_TOKEN_SECONDS": "86400"}
    run_upgrade(cmd, env)
    if reuse:
        print(f"  reusing the kept database ({kept:,} resources)", flush=True)
    result: dict[str, Any] = {"size": size,
                              "load": {"reused": True} if reuse else load(size, args, cmd, env)}
    # The steady state autovacuum reaches on its own: statistics, and a visibility map that lets
    # index-only scans skip the heap. Measuring while autovacuum still works through a fresh
    # load measured autovacuum (a read p95 of 153 ms against a p50 of 11 ms).
    started = time.perf_counter()
    _sql(pg, "VACUUM (ANALYZE)")
    result["vacuum_seconds"] = round(time.perf_counter() - started, 1)
    print(f"  VACUUM (ANALYZE) in {result['vacuum_seconds']} s", flush=True)
    # As an operator would after a bulk load: the common codes' counts maintained (ADR 0019),
    # not promoted by the first counts while the shapes are measured.
    started = time.perf_counter()
    counted = subprocess.run([*cmd, "db", "counts"], env=env, check=True, capture_output=True,
                             text=True).stdout.strip()
    result["counts_seconds"] = round(time.perf_counter() - started, 1)
    print(f"  akson db counts in {result['counts_seconds']} s: {counted}", flush=True)
    result["resources"] = _sql(pg, "SELECT count(*) FROM resource WHERE NOT deleted")[0][0]
    data = sample(pg.conninfo(DB), args.seed)
    server = ServerProcess(cmd, env, HOST, free_port(), args.workers)
    try:
        server.wait_healthy()
        base = f"http://{HOST}:{server.port}/fhir"
        AUTH["Authorization"] = "Bearer " + system_token(f"http://{HOST}:{server.port}",
                                                         Path(key_dir))
        sampler = RssSampler(server.proc.pid)
        sampler.start()
        shapes, skipped = [], {}
        rng = random.Random(args.seed)
        only = set(filter(None, args.shapes.split(",")))
        for shape in SHAPES:
            if only and shape.key not in only:
                continue
            why = probe(base, shape, data)
            if why:
                skipped[shape.key] = why
                print(f"  skip {shape.key}: {why}", flush=True)
                continue
            stats = asyncio.run(run_shape(base, shape, data, args, rng))
            print(f"  {shape.key:<18} p50 {stats['p50_ms']:8.1f} ms  p95 {stats['p95_ms']:8.1f} ms  "
                  f"{stats['req_per_s']:7.1f} req/s  errors {stats['errors']}", flush=True)
            shapes.append(stats)
        result["shapes"], result["skipped"] = shapes, skipped
        if not only:
            result["export"] = export(base, sampler)
            print(f"  $export: {result['export']}", flush=True)
        sampler.stop()
        result["server_peak_rss_mb"] = round(sampler.peak / MB, 1)
    finally:
        server.stop()
    return result


# ------------------------------------------------------------------ report


def markdown(results: list[dict[str, Any]]) -> str:
    sizes = [r["size"] for r in results]
    head = "| shape | " + " | ".join(f"p50 / p95 @{s:,}" for s in sizes) + " | p95 ratio | ≤50 ms |"
    lines = [head, "|---" * (len(sizes) + 3) + "|"]
    keys = [s.key for s in SHAPES]
    for key in keys:
        row = [next((x for x in r["shapes"] if x["key"] == key), None) for r in results]
        if all(x is None for x in row):
            lines.append(f"| {key} | " + " | ".join("skipped" for _ in sizes) + " | | |")
            continue
        cells = [f"{x['p50_ms']} / {x['p95_ms']}" + (f" ({x['errors']} err)" if x["errors"] else "")
                 if x else "skipped" for x in row]
        ratio = f"{row[-1]['p95_ms'] / row[0]['p95_ms']:.2f}" if row[0] and row[-1] else ""
        scoped = row[-1] or row[0]
        ok = ("yes" if all(x["p95_ms"] <= PATIENT_P95_MS for x in row if x) else "NO") \
            if scoped and scoped["patient_scoped"] else ""
        lines.append(f"| {key} | " + " | ".join(cells) + f" | {ratio} | {ok} |")
    lines += ["", "| size | resources | Synthea import | demo load | $export | export lines/s | "
              "server peak RSS during export |", "|---|---|---|---|---|---|---|"]
    for r in results:
        if r["load"].get("reused"):
            lines.append(f"| {r['size']:,} | {r['resources']:,} | (reused) | (reused) | "
                         + _export_cells(r.get("export", NOT_EXPORTED)))
            continue
        syn, demo, exp = r["load"].get("synthea", {}), r["load"]["demo"], r.get("export", NOT_EXPORTED)
        lines.append(
            f"| {r['size']:,} | {r['resources']:,} | "
            + (f"{syn['resources']:,} in {syn['seconds']} s ({syn['resources_per_s']}/s)" if syn else "—")
            + f" | {demo['resources']:,} in {demo['seconds']} s ({demo['resources_per_s']}/s) | "
            + _export_cells(exp))
    for r in results:
        for key, why in r["skipped"].items():
            lines.append(f"\nskipped at {r['size']:,}: {key}: {why}")
    return "\n".join(lines)


NOT_EXPORTED = {"error": "not measured (--shapes)"}


def _export_cells(exp: dict[str, Any]) -> str:
    if "error" in exp:
        return f"{exp['error']} | | |"
    return (f"{exp.get('resources', 0):,} in {exp.get('total_seconds')} s | "
            f"{exp.get('lines_per_s')} | {exp.get('peak_rss_mb')} MB |")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    unknown = set(filter(None, args.shapes.split(","))) - {s.key for s in SHAPES}
    if unknown:
        print(f"unknown shapes: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    global DB
    DB = args.db_name
    pg = PgTarget(args.pg_host, args.pg_port, args.pg_user)
    cmd = shlex.split(args.server_cmd)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{pg_version(pg)[1]}; {os.cpu_count()} CPUs; {args.clients} clients, "
          f"{args.workers} workers, {args.requests} requests per shape", flush=True)
    results = []
    try:
        for size in sizes:
            results.append(run_size(size, args, pg, cmd))
    finally:
        if not args.keep:
            _admin(pg, f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
    if not results:
        return 1
    print("\n" + markdown(results))
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                               "postgres": pg_version(pg)[1], "cpus": os.cpu_count(),
                               "results": results}, indent=2))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
