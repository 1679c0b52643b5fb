"""`akson audit`: prove the audit log untampered (`verify`), export chain heads (`heads`) and the
privacy officer's report of one organisation's accesses (`report`).

`verify` exits 0 when every chain is intact and 1 when anything was altered, deleted, reordered
or truncated (2: this database has no audit log), printing the chain and sequence of each
problem — positions only, never personal data. The chain heads are signed with a key derived
from the installation secret (`AKSON_SECRET_KEY`, or the key file beside the database; see
akson.api.fhir.paging), so run it with the same secret as the server. `heads` prints every
chain's head as JSON; keep that output outside the database (e.g. daily, in the operations log)
and pass it back with `verify --anchors FILE` to detect a truncation hidden by restoring an old
head from a backup.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click
import orjson

from akson.access.audit import citizen_view
from akson.api.fhir.paging import audit_key
from akson.config import Settings
from akson.fhir.dates import date_range
from akson.fhir.outcome import FhirError
from akson.store import audit_log
from akson.store.database import connect

__all__ = ["audit", "audit_key", "report_lines"]


def _anchors(path: str | None) -> dict[int, tuple[int, bytes]]:
    if path is None:
        return {}
    raw = orjson.loads(Path(path).read_bytes())
    try:
        return {int(chain): (int(head["seq"]), bytes.fromhex(head["hash"]))
                for chain, head in raw.items()}
    except (AttributeError, KeyError, TypeError, ValueError):
        raise click.BadParameter("not a file written by `akson audit heads`",
                                 param_hint="--anchors") from None


_NOT_INSTALLED = "This database has no audit log yet: run `akson db upgrade` first."


async def _verify(url: str,
                  anchors: dict[int, tuple[int, bytes]]) -> audit_log.VerifyReport | None:
    db = connect(url, pool_size=2)
    await db.open()
    try:
        if not await audit_log.installed(db):
            return None
        return await audit_log.verify(db, audit_key(url), anchors=anchors)
    finally:
        await db.close()


async def _heads(url: str) -> dict[int, tuple[int, bytes]] | None:
    db = connect(url, pool_size=2)
    await db.open()
    try:
        return await audit_log.heads(db) if await audit_log.installed(db) else None
    finally:
        await db.close()


@click.group()
def audit() -> None:
    """The append-only, hash-chained audit log."""


@audit.command("verify")
@click.option("--anchors", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Chain heads saved earlier by `akson audit heads`, kept outside the database.")
def verify_cmd(anchors: str | None) -> None:
    """Recompute every chain's hashes; exit 0 if intact, 1 if tampered."""
    url = Settings.from_env().database_url
    report = asyncio.run(_verify(url, _anchors(anchors)))
    if report is None:
        click.echo(_NOT_INSTALLED, err=True)
        sys.exit(2)
    if report.ok:
        click.echo(f"audit log intact: {report.chains} chains, {report.events} events")
        sys.exit(0)
    click.echo(f"audit log TAMPERED: {len(report.problems)} problem(s) in {report.chains} chains, "
               f"{report.events} events walked")
    for problem in report.problems:
        click.echo("  " + problem.describe())
    sys.exit(1)


@audit.command("heads")
def heads_cmd() -> None:
    """Print every chain's head (sequence and hash) as JSON, to keep outside the database."""
    heads = asyncio.run(_heads(Settings.from_env().database_url))
    if heads is None:
        click.echo(_NOT_INSTALLED, err=True)
        sys.exit(2)
    out = {str(chain): {"seq": seq, "hash": digest.hex()} for chain, (seq, digest) in heads.items()}
    click.echo(orjson.dumps(out, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())


def report_lines(breaks: list[audit_log.AuditRecord], declared: list[audit_log.AuditRecord],
                 volumes: list[audit_log.Volume], threshold: int) -> list[str]:
    """The report as text lines: break-the-glass and self-declared accesses (when, who, which
    patient ids, the stated reason) and principals above the volume threshold. Patient ids are
    logical ids; national ids never appear."""
    out = [f"Break-the-glass accesses: {len(breaks)}"]
    out += [_report_line(r) for r in breaks]
    out.append(f"Self-declared care relationships: {len(declared)}")
    out += [_report_line(r) for r in declared]
    out.append(f"Principals with more than {threshold} distinct patients: {len(volumes)}")
    out += [f"  {v.agent}: {v.patients} patients, {v.events} events" for v in volumes]
    return out


def _report_line(record: audit_log.AuditRecord) -> str:
    line = citizen_view(record)
    patients = ", ".join(record.entry.patients) or "-"
    reason = f" reason: {line.reason}" if line.reason else ""
    return (f"  {line.when} {record.entry.agent or '?'} ({line.who}) unit {line.unit or '?'} "
            f"{line.what} patients {patients}{reason}")


async def _report(url: str, org: str, start: int, end: int, threshold: int) -> list[str] | None:
    db = connect(url, pool_size=2)
    await db.open()
    try:
        if not await audit_log.installed(db):
            return None
        async with db.transaction(write=False) as tx:
            breaks = await audit_log.break_glass(tx, org, start, end)
            declared = await audit_log.self_declared(tx, org, start, end)
            volumes = await audit_log.unusual_volumes(tx, org, start, end, threshold)
        return report_lines(breaks, declared, volumes, threshold)
    finally:
        await db.close()


@audit.command("report")
@click.option("--org", required=True, help="The legal entity's organisation number (orgnr).")
@click.option("--from", "start", required=True, help="First day or instant (FHIR date).")
@click.option("--to", "end", required=True, help="Last day or instant (FHIR date), included.")
@click.option("--threshold", default=100, show_default=True,
              help="Report principals who accessed more distinct patients than this.")
def report_cmd(org: str, start: str, end: str, threshold: int) -> None:
    """The privacy officer's report: break-the-glass, self-declared access, unusual volumes."""
    try:
        lo, hi = date_range(start)[0], date_range(end)[1] + 1
    except FhirError as exc:
        raise click.BadParameter(exc.diagnostics) from None
    lines = asyncio.run(_report(Settings.from_env().database_url, org, lo, hi, threshold))
    if lines is None:
        click.echo(_NOT_INSTALLED, err=True)
        sys.exit(2)
    click.echo(f"Audit report for orgnr {org}, {start} to {end}")
    for line in lines:
        click.echo(line)
