"""HTTP benchmark for the Akson FHIR server against SQLite and/or PostgreSQL."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shlex
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import loadgen
from calibrate import measure_client
from loadgen import install_fast_loop, run_phase
from report import comparison_table, markdown_table, phase_line, write_json
from serverproc import PgTarget, RssSampler, ServerProcess, bench_database, free_port, pg_version
from serverproc import run_upgrade as db_upgrade
from synth import PatientFactory
from workloads import (
    CreatePatients,
    Dataset,
    ReadPatients,
    SearchFamily,
    SearchIdentifier,
    Transactions,
)

REPO = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
HOST = "127.0.0.1"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per phase")
    ap.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds per phase")
    ap.add_argument(
        "--requests",
        type=int,
        default=None,
        help="fixed request count per phase instead of --duration",
    )
    ap.add_argument("--clients", type=int, default=8, help="concurrent connections")
    ap.add_argument("--workers", type=int, default=2, help="server worker processes")
    ap.add_argument(
        "--bundle-patients",
        type=int,
        default=25,
        help="Patients per transaction (plus as many Observations)",
    )
    ap.add_argument(
        "--calibrate",
        type=float,
        default=3.0,
        help="seconds of client-ceiling measurement (0 = skip)",
    )
    ap.add_argument(
        "--server-cmd",
        default=str(REPO / ".venv" / "bin" / "akson"),
        help="command prefix accepting 'db upgrade' and 'serve ...'",
    )
    ap.add_argument("--port", type=int, default=0, help="server port (0 = pick a free one)")
    ap.add_argument("--pg-host", default="127.0.0.1")
    ap.add_argument("--pg-port", type=int, default=5432)
    ap.add_argument("--pg-user", default="postgres")
    ap.add_argument(
        "--pregen",
        type=int,
        default=20000,
        help="Patient bodies generated before the create phases",
    )
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--results-dir", type=Path, default=None)
    return ap.parse_args(argv)


async def run_phases(
    args: argparse.Namespace, port: int, sampler: RssSampler, db: str
) -> tuple[list[dict[str, Any]], Dataset]:
    host = f"{HOST}:{port}"
    data = Dataset()
    factory = PatientFactory(args.seed)
    creator = CreatePatients(host, data, factory, args.pregen)
    plan: list[tuple[str, str, Any, int, int]] = [
        ("seq_create", "create Patient (sequential)", creator, 1, 1),
        ("create", "create Patient (concurrent)", creator, args.clients, 1),
        ("read", "read Patient by id", None, args.clients, 1),
        ("search_identifier", "search Patient?identifier=fnr", None, args.clients, 1),
        ("search_family", "search Patient?family=&_count=10", None, args.clients, 1),
        (
            "transaction",
            f"transaction ({2 * args.bundle_patients} entries)",
            None,
            args.clients,
            2 * args.bundle_patients,
        ),
    ]
    phases: list[dict[str, Any]] = []
    for key, name, workload, clients, per_req in plan:
        if workload is None:
            if not data.ids:
                raise RuntimeError("no Patients were created; cannot run read/search phases")
            workload = {
                "read": lambda: ReadPatients(host, data, 11),
                "search_identifier": lambda: SearchIdentifier(host, data, 12),
                "search_family": lambda: SearchFamily(host, data, 13),
                "transaction": lambda: Transactions(host, data, factory, args.bundle_patients),
            }[key]()
        stats = await run_phase(
            name,
            HOST,
            port,
            workload,
            clients,
            args.duration,
            args.warmup,
            count=args.requests,
            resources_per_request=per_req,
            on_measure_start=sampler.new_phase,
        )
        sampler.sample()
        stats.peak_rss_mb = round(sampler.phase_peak / MB, 1)
        summary = {"key": key, **stats.summary()}
        print(phase_line(summary, db), flush=True)
        phases.append(summary)
    return phases, data


def system_token(port: int, key_dir: Path) -> str:
    """A `system/*.*` token of the server's built-in client (`akson token`'s flow)."""
    from akson.idp.clients import CLI_CLIENT_ID, cli_private_key
    from akson.idp_cli import fetch_token

    body = fetch_token(f"http://{HOST}:{port}", CLI_CLIENT_ID, cli_private_key(key_dir))
    return str(body["access_token"])


def bench_one(db: str, args: argparse.Namespace, ceiling: dict[str, Any] | None) -> dict[str, Any]:
    pg = PgTarget(args.pg_host, args.pg_port, args.pg_user)
    if db == "postgres":
        version, version_full = pg_version(pg)
    else:
        version = version_full = f"SQLite {sqlite3.sqlite_version} (Python's library)"
    print(f"\n== {db}: {version_full}", flush=True)
    cmd = shlex.split(args.server_cmd)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    with bench_database(db, pg) as url:
        # The provider's keys in a folder of the run's own; a token that outlives the run, so
        # every phase measures authentication, the access gate and the audit log.
        key_dir = Path(tempfile.mkdtemp(prefix="akson-bench-keys-"))
        env = {**os.environ, "AKSON_DATABASE_URL": url, "AKSON_IDP_KEY_DIR": str(key_dir),
               "AKSON_IDP_ACCESS_TOKEN_SECONDS": "86400"}
        db_upgrade(cmd, env)
        port = args.port or free_port()
        server = ServerProcess(cmd, env, HOST, port, args.workers)
        try:
            startup = server.wait_healthy()
            loadgen.EXTRA_HEADERS["Authorization"] = "Bearer " + system_token(port, key_dir)
            sampler = RssSampler(server.proc.pid)
            sampler.start()
            idle = sampler.sample()
            print(
                f"  server healthy after {startup:.2f}s on :{port}, idle RSS {idle / MB:.0f} MB",
                flush=True,
            )
            try:
                phases, data = asyncio.run(run_phases(args, port, sampler, db))
            finally:
                sampler.stop()
        finally:
            server.stop()
    return {
        "db": db,
        "db_version": version,
        "db_version_full": version_full,
        "started_at": started,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "config": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "requests": args.requests,
            "clients": args.clients,
            "workers": args.workers,
            "bundle_entries": 2 * args.bundle_patients,
            "server_cmd": args.server_cmd,
            "client_loop": args.client_loop,
        },
        "client_ceiling_req_per_s": ceiling["req_per_s"] if ceiling else 0.0,
        "client_ceiling": ceiling,
        "server_startup_s": round(startup, 3),
        "server_idle_rss_mb": round(idle / MB, 1),
        "server_peak_rss_mb": round(sampler.peak / MB, 1),
        "patients_created_before_reads": len(data.ids),
        "distinct_families": len(data.families),
        "patients_per_family_avg": round(len(data.ids) / max(1, len(data.families)), 1),
        "phases": phases,
        "ok": all(
            p["errors"] == 0 and p["warmup_errors"] == 0 and p["check_failures"] == 0
            for p in phases
        ),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.client_loop = install_fast_loop()
    ceiling = None
    if args.calibrate > 0:
        stats = measure_client(args.clients, args.calibrate)
        ceiling = stats.summary()
        print(
            f"load generator ceiling ({args.client_loop}, {args.clients} clients, trivial "
            f"server): {stats.req_per_s:,.0f} req/s, p50 {stats.percentile_ms(50):.2f} ms",
            flush=True,
        )
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    results = []
    for db in dbs:
        try:
            result = bench_one(db, args, ceiling)
        except Exception as exc:  # setup failures: no server binary, no PostgreSQL, ...
            print(f"\n{db}: benchmark aborted: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
        results.append(result)
        path = write_json(result, args.results_dir) if args.results_dir else write_json(result)
        print(f"\n{markdown_table(result)}\n\nresults written to {path}", flush=True)
    if len(results) > 1:
        print(f"\n{comparison_table(results)}")
    if not all(r["ok"] for r in results):
        print("\nFAILED: some requests returned non-2xx or failed checks", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
