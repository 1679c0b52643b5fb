"""`akson audit`: prove the audit log untampered (`verify`) and export chain heads (`heads`).

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

from akson.api.fhir.paging import audit_key
from akson.config import Settings
from akson.store import audit_log
from akson.store.database import connect

__all__ = ["audit", "audit_key"]


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
