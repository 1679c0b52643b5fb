"""The trust services' cost: the HTTP benchmark's phases with and without them, interleaved.

*With* is this checkout. There are two *withouts*:

- *foundation*: the last build before authentication, the access gate and the audit log were
  wired into the FHIR API (`--base`, default 9c85a15), checked out in a temporary git worktree
  and served by `bench/base_server.py`. It also lacks every later change to search, indexing
  and storage, which make some phases faster and others slower;
- *open*: this checkout without its trust services (`bench/open_server.py`: no token read, a
  plan that restricts nothing, no audit record), so the difference is those services alone.

The three servers run at once, each on its own PostgreSQL database, and every phase of
`bench/http_bench.py` is measured in short turns that go round them (`--rounds` turns each). A
small VM's speed drifts by ±20 % over minutes; turns seconds apart see the same machine, so each
round gives one cost per *without*, and the median of the rounds is the figure. Printed: per
phase the median rate of each build and the median cost, 1 − with/without, against the
trust-services issue's limit of 25 %.

A rate moves with the CPU time other tenants of a VM take (steal); the CPU time a request uses
moves far less. So each turn also reads the CPU time of the server's processes and of its
PostgreSQL client backends (/proc), and a second table gives per phase the median CPU µs per
request and the cost it implies for a CPU-bound server, 1 − cpu without / cpu with. It leaves
out the load generator, which shares the machine and costs the same per request for every
build, so it overstates the cost a little rather than understating it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

import loadgen
from http_bench import system_token
from loadgen import install_fast_loop, run_phase
from serverproc import (
    PgTarget,
    ServerProcess,
    bench_database,
    cpu_seconds,
    free_port,
    process_tree,
    run_upgrade,
)
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
BENCH = REPO / "bench"
PYTHON = REPO / ".venv" / "bin" / "python"
HOST = "127.0.0.1"
LIMIT = 0.25  # the gate plus audit may cost at most 25 %, judged against *open* (ADR 0016)
BUNDLE_PATIENTS = 25

#: (key, name, concurrent?) in http_bench's order: the create phases make the data the others use.
PHASES = [("seq_create", "create, sequential (req/s)", False),
          ("create", "create, concurrent (req/s)", True),
          ("read", "read by id (req/s)", True),
          ("search_identifier", "search by identifier (req/s)", True),
          ("search_family", "search by family (req/s)", True),
          ("transaction", "transaction (resources/s)", True)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--base", default="9c85a15", help="the build without (a git revision)")
    ap.add_argument("--rounds", type=int, default=5, help="turns of each build per phase")
    ap.add_argument("--turn", type=float, default=4.0, help="measured seconds per turn")
    ap.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds per turn")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=4242)
    return ap.parse_args(argv)


@dataclass
class Build:
    """One server under test and the data the benchmark made on it."""

    label: str
    port: int
    token: str
    server_pid: int
    db_name: str
    data: Dataset = field(default_factory=Dataset)
    creator: CreatePatients | None = None
    rates: dict[str, list[float]] = field(default_factory=dict)
    cpu_us: dict[str, list[float]] = field(default_factory=dict)  # per request, per turn

    def cpu_seconds(self, admin: Any) -> float:
        """CPU time used so far by the server's processes and its PostgreSQL client backends."""
        backends = [row[0] for row in admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s "
            "AND backend_type = 'client backend'", (self.db_name,))]
        return cpu_seconds(process_tree(self.server_pid) + backends)

    def workload(self, key: str, factory: PatientFactory) -> Any:
        host = f"{HOST}:{self.port}"
        if self.creator is None:
            self.creator = CreatePatients(host, self.data, factory, 20000)
        make: dict[str, Callable[[], Any]] = {
            "seq_create": lambda: self.creator, "create": lambda: self.creator,
            "read": lambda: ReadPatients(host, self.data, 11),
            "search_identifier": lambda: SearchIdentifier(host, self.data, 12),
            "search_family": lambda: SearchFamily(host, self.data, 13),
            "transaction": lambda: Transactions(host, self.data, factory, BUNDLE_PATIENTS)}
        return make[key]()


@contextlib.contextmanager
def served(label: str, cmd: list[str], db_name: str, workers: int) -> Iterator[Build]:
    """A server of `cmd` on a fresh database, with a `system/*.*` token of its built-in client."""
    with bench_database("postgres", PgTarget(), db_name) as url, \
            tempfile.TemporaryDirectory(prefix="akson-cost-keys-") as keys:
        env = {**os.environ, "AKSON_DATABASE_URL": url, "AKSON_IDP_KEY_DIR": keys,
               "AKSON_IDP_ACCESS_TOKEN_SECONDS": "86400"}
        run_upgrade(cmd, env)
        port = free_port()
        server = ServerProcess(cmd, env, HOST, port, workers)
        try:
            server.wait_healthy()
            yield Build(label, port, system_token(port, Path(keys)), server.proc.pid, db_name)
        finally:
            server.stop()


async def measure(args: argparse.Namespace, builds: list[Build], admin: Any) -> None:
    factories = {b.label: PatientFactory(args.seed) for b in builds}
    for key, name, concurrent in PHASES:
        clients = args.clients if concurrent else 1
        per_request = 2 * BUNDLE_PATIENTS if key == "transaction" else 1
        for turn in range(args.rounds):
            # Alternate the order, so no build always follows another's writes.
            for build in builds if turn % 2 == 0 else builds[::-1]:
                loadgen.EXTRA_HEADERS["Authorization"] = "Bearer " + build.token
                cpu_before = build.cpu_seconds(admin)
                stats = await run_phase(name, HOST, build.port,
                                        build.workload(key, factories[build.label]), clients,
                                        args.turn, args.warmup, resources_per_request=per_request)
                cpu = build.cpu_seconds(admin) - cpu_before
                summary = stats.summary()
                requests = summary["requests"] + summary["warmup_requests"]
                build.cpu_us.setdefault(key, []).append(1e6 * cpu / max(requests, 1))
                if summary["errors"] or summary["check_failures"]:
                    raise RuntimeError(f"{build.label} {key}: {summary['first_error']} "
                                       f"{summary['first_check_failure']}")
                rate = summary["resources_per_s"] if key == "transaction" else summary["req_per_s"]
                build.rates.setdefault(key, []).append(float(rate))
        print(f"{name}: " + "; ".join(f"{b.label} {', '.join(f'{r:,.0f}' for r in b.rates[key])}"
                                      for b in builds), flush=True)


def _pct(value: float) -> str:
    return f"{value:.0%}".replace("-", "−")


def table(without: Build, with_: Build, *, cpu: bool = False) -> str:
    """Per phase: each build's median and the median over rounds of the cost — from the rates,
    or (`cpu`) from the CPU µs per request, whose ratio is inverse."""
    unit = " CPU µs per request" if cpu else ""
    rows = [f"| phase | {without.label}{unit} (median) | with{unit} (median) | cost, median of "
            "rounds (range) | within 25 % |", "|---|---:|---:|---:|---|"]
    for key, name, _ in PHASES:
        a, b = (without.cpu_us[key], with_.cpu_us[key]) if cpu else \
            (without.rates[key], with_.rates[key])
        # negative: cheaper with
        costs = sorted(1 - x / y if cpu else 1 - y / x for x, y in zip(a, b, strict=True))
        cost = statistics.median(costs)
        label = name.split(" (", 1)[0] if cpu else name
        rows.append(f"| {label} | {statistics.median(a):,.0f} | {statistics.median(b):,.0f} "
                    f"| {_pct(cost)} ({_pct(costs[0])} … {_pct(costs[-1])}) "
                    f"| {'yes' if round(cost, 2) <= LIMIT else 'no'} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_fast_loop()
    with tempfile.TemporaryDirectory(prefix="akson-cost-") as tmp:
        tree = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(tree),
                        args.base], check=True)
        try:
            base_cmd = shlex.split(f"env PYTHONPATH={shlex.quote(str(tree / 'src'))} {PYTHON} "
                                   f"{BENCH / 'base_server.py'}")
            open_cmd = shlex.split(f"env PYTHONPATH={shlex.quote(str(BENCH))} {PYTHON} "
                                   f"{BENCH / 'open_server.py'}")
            this_cmd = [str(REPO / ".venv" / "bin" / "akson")]
            with served("foundation", base_cmd, "akson_cost_without", args.workers) as base, \
                    served("open", open_cmd, "akson_cost_open", args.workers) as open_, \
                    served("with", this_cmd, "akson_cost_with", args.workers) as with_, \
                    psycopg.connect(PgTarget().conninfo("postgres"), autocommit=True) as admin:
                asyncio.run(measure(args, [base, open_, with_], admin))
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                           check=False)
    print(f"\nfoundation = {args.base} (served by bench/base_server.py), open = this checkout "
          f"without its trust services (bench/open_server.py), with = this checkout; "
          f"{args.rounds} turns each per phase, in rounds, {args.turn:g} s measured per turn, "
          f"{args.clients} clients, {args.workers} workers each, PostgreSQL\n")
    print("Against the foundation build:\n")
    print(table(base, with_))
    print("\nAgainst this build without its trust services:\n")
    print(table(open_, with_))
    print("\nThe same, by CPU time per request (the server's processes and its PostgreSQL "
          "client backends):\n")
    print(table(open_, with_, cpu=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
