"""The trust services' cost: the HTTP benchmark with and without them, runs alternating.

*Without* is the last build before authentication, the access gate and the audit log were wired
into the FHIR API (`--base`, default 9c85a15), checked out in a temporary git worktree and served
by `bench/base_server.py`; *with* is this checkout. Both run `bench/http_bench.py` on PostgreSQL
with the same arguments, `--rounds` times each, alternating, so drift of the machine falls on
both. Printed: per phase the median req/s (resources/s for transactions) of each build and the
cost, 1 − with/without, against the trust-services issue's limit of 25 %.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
PYTHON = REPO / ".venv" / "bin" / "python"
LIMIT = 0.25  # the gate plus audit may cost at most 25 % of the foundation's throughput


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--base", default="9c85a15", help="the build without (a git revision)")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each build, alternating")
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    return ap.parse_args(argv)


def rate(phase: dict[str, Any]) -> float:
    return float(phase["resources_per_s"] if phase["key"] == "transaction" else phase["req_per_s"])


def run_once(args: argparse.Namespace, server_cmd: str, out: Path) -> dict[str, float]:
    """One `http_bench.py` run on PostgreSQL: {phase key: rate}."""
    cmd = [str(PYTHON), str(BENCH / "http_bench.py"), "--db", "postgres", "--calibrate", "0",
           "--duration", str(args.duration), "--warmup", str(args.warmup),
           "--clients", str(args.clients), "--workers", str(args.workers),
           "--server-cmd", server_cmd, "--results-dir", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"http_bench failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                           f"{proc.stderr[-3000:]}")
    result = json.loads(max(out.glob("postgres-*.json")).read_text())
    for path in out.glob("*.json"):
        path.unlink()
    return {p["key"]: rate(p) for p in result["phases"]}


def table(names: dict[str, str], without: list[dict[str, float]],
          with_: list[dict[str, float]]) -> str:
    rows = ["| phase | without (median) | with (median) | cost | within 25 % |",
            "|---|---:|---:|---:|---|"]
    for key, name in names.items():
        a = statistics.median(r[key] for r in without)
        b = statistics.median(r[key] for r in with_)
        cost = 1 - b / a  # negative: faster with than without
        cost_text = f"{cost:.0%}".replace("-", "−")
        rows.append(f"| {name} | {a:,.0f} | {b:,.0f} | {cost_text} | "
                    f"{'yes' if cost <= LIMIT else 'no'} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = {"seq_create": "create, sequential (req/s)", "create": "create, concurrent (req/s)",
             "read": "read by id (req/s)", "search_identifier": "search by identifier (req/s)",
             "search_family": "search by family (req/s)",
             "transaction": "transaction (resources/s)"}
    with tempfile.TemporaryDirectory(prefix="akson-cost-") as tmp:
        tree = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(tree),
                        args.base], check=True)
        try:
            base_cmd = (f"env PYTHONPATH={shlex.quote(str(tree / 'src'))} {PYTHON} "
                        f"{BENCH / 'base_server.py'}")
            this_cmd = str(REPO / ".venv" / "bin" / "akson")
            without: list[dict[str, float]] = []
            with_: list[dict[str, float]] = []
            for n in range(args.rounds):
                for label, cmd, runs in (("without", base_cmd, without), ("with", this_cmd, with_)):
                    runs.append(run_once(args, cmd, Path(tmp) / "results"))
                    figures = ", ".join(f"{k} {v:,.0f}" for k, v in runs[-1].items())
                    print(f"round {n + 1} {label}: {figures}", flush=True)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                           check=False)
    print(f"\nwithout = {args.base} (served by bench/base_server.py), with = this checkout; "
          f"{args.rounds} runs each, {args.clients} clients, {args.workers} workers, "
          f"{args.duration:g} s per phase\n")
    print(table(names, without, with_))
    return 0


if __name__ == "__main__":
    sys.exit(main())
