"""Targets, console/markdown tables and JSON output for benchmark results."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# phase key -> (PostgreSQL target, mature Node.js FHIR server on the same machine kind);
# both in req/s, except transactions which are in resources/s.
TARGETS: dict[str, tuple[float, float]] = {
    "create": (1000, 330),
    "read": (3000, 1000),
    "search_identifier": (2000, 715),
    "search_family": (1000, 350),
    "transaction": (2000, 220),
}


def headline(phase: dict[str, Any]) -> float:
    """The figure compared to targets: resources/s for transactions, else req/s."""
    key = "resources_per_s" if phase["key"] == "transaction" else "req_per_s"
    return float(phase[key])


def _unit(key: str) -> str:
    return "res/s" if key == "transaction" else "req/s"


def verdict(phase: dict[str, Any], db: str) -> str:
    target = TARGETS.get(phase["key"])
    if target is None or db != "postgres":
        return ""
    return "PASS" if headline(phase) >= target[0] else "below target"


def phase_line(p: dict[str, Any], db: str) -> str:
    """One human-readable line per phase, printed as phases finish."""
    rate = f"{p['req_per_s']:,.0f} req/s"
    if p["key"] == "transaction":
        rate += f" = {p['resources_per_s']:,.0f} resources/s"
    line = (
        f"  {p['name']:<34} n={p['requests']:<7} errors={p['errors']:<3} {rate:<36} "
        f"p50={p['p50_ms']:.1f} p95={p['p95_ms']:.1f} p99={p['p99_ms']:.1f} ms"
    )
    if p.get("peak_rss_mb") is not None:
        line += f"  server RSS peak {p['peak_rss_mb']:.0f} MB"
    line += f"  client cpu {p['client_cpu_pct']:.0f}%"
    if p["warmup_errors"]:
        line += f"  warm-up errors={p['warmup_errors']}"
    target = TARGETS.get(p["key"])
    if target is not None:
        unit = _unit(p["key"])
        line += f"  [target(PG) ≥{target[0]:,.0f} {unit}, Node.js ~{target[1]:,.0f}]"
        if db == "postgres":
            line += f" {verdict(p, db)}"
    if p["first_error"]:
        line += f"\n    first error: {p['first_error']}"
    if p["first_check_failure"]:
        line += f"\n    first check failure ({p['check_failures']}): {p['first_check_failure']}"
    return line


def markdown_table(result: dict[str, Any]) -> str:
    db = result["db"]
    rows = [
        f"### Akson HTTP benchmark — {db} ({result['db_version']}), "
        f"{result['config']['workers']} workers, {result['config']['clients']} clients",
        "",
        "| phase | clients | requests | errors | req/s | resources/s | p50 ms | p95 ms | p99 ms "
        "| target (PG) | Node.js ref | result |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for p in result["phases"]:
        target = TARGETS.get(p["key"])
        tgt = f"≥{target[0]:,.0f} {_unit(p['key'])}" if target else "—"
        ref = f"~{target[1]:,.0f} {_unit(p['key'])}" if target else "—"
        rows.append(
            f"| {p['name']} | {p['clients']} | {p['requests']:,} | {p['errors']} "
            f"| {p['req_per_s']:,.0f} | {p['resources_per_s']:,.0f} | {p['p50_ms']:.1f} "
            f"| {p['p95_ms']:.1f} | {p['p99_ms']:.1f} | {tgt} | {ref} | {verdict(p, db)} |"
        )
    ceiling = result["client_ceiling_req_per_s"]
    ceiling_text = f"{ceiling:,.0f} req/s" if ceiling else "not measured"
    rows += [
        "",
        f"Server peak RSS (process tree): {result['server_peak_rss_mb']:.0f} MB "
        f"(idle after start: {result['server_idle_rss_mb']:.0f} MB). "
        f"Load-generator ceiling vs trivial server: {ceiling_text} "
        f"({result['config']['client_loop']}). {result['db_version_full']}.",
    ]
    return "\n".join(rows)


def comparison_table(results: list[dict[str, Any]]) -> str:
    """Side-by-side headline figures when several databases were benchmarked."""
    dbs = [r["db"] for r in results]
    rows = [
        "| phase | " + " | ".join(dbs) + " | target (PG) | Node.js ref |",
        "|---|" + "---:|" * (len(dbs) + 2),
    ]
    for i, p in enumerate(results[0]["phases"]):
        target = TARGETS.get(p["key"])
        figures = " | ".join(f"{headline(r['phases'][i]):,.0f}" for r in results)
        tgt = f"≥{target[0]:,.0f}" if target else "—"
        ref = f"~{target[1]:,.0f}" if target else "—"
        rows.append(f"| {p['name']} ({_unit(p['key'])}) | {figures} | {tgt} | {ref} |")
    return "\n".join(rows)


def write_json(result: dict[str, Any], results_dir: Path = RESULTS_DIR) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    path = results_dir / f"{result['db']}-{stamp}.json"
    path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return path
