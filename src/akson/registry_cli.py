"""`akson registry`: import base-data register files (docs/registers.md) into the store."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import click

from akson.config import Settings
from akson.fhir.searchparams import SearchParamRegistry
from akson.registry.loader import Counts, ImportSummary, import_file, load_municipalities
from akson.registry.records import REGISTERS
from akson.registry_sync_cli import sync
from akson.store.database import connect
from akson.store.migrate import upgrade
from akson.store.repository import ResourceStore

__all__ = ["registry", "run_registry_import", "run_load_municipalities"]


async def _with_store(settings: Settings, job):  # type: ignore[no-untyped-def]
    db = connect(settings.database_url, pool_size=2)
    await db.open()
    try:
        return await job(ResourceStore(db, SearchParamRegistry.default()))
    finally:
        await db.close()


def run_registry_import(settings: Settings, register: str, path: str | Path, *,
                        progress: bool = True, migrate: bool = True) -> ImportSummary:
    """Import one register file into the database of `settings` (migrating it first)."""
    if migrate:
        upgrade(settings.database_url)

    async def job(store: ResourceStore) -> ImportSummary:
        return await import_file(store, register, path, settings=settings, progress=progress)

    result: ImportSummary = asyncio.run(_with_store(settings, job))
    return result


def run_load_municipalities(settings: Settings, *, migrate: bool = True) -> Counts:
    """Store the 357 municipality Organizations that are not there yet."""
    if migrate:
        upgrade(settings.database_url)

    async def job(store: ResourceStore) -> Counts:
        async with store.session(write=True) as s:
            return await load_municipalities(s)

    result: Counts = asyncio.run(_with_store(settings, job))
    return result


@click.group()
def registry() -> None:
    """Base-data registers: FREG, HPR, Enhetsregisteret, FLR, AR (docs/registers.md)."""


@registry.command("import")
@click.option("--register", "register", required=True, type=click.Choice(REGISTERS),
              help="Which register the file holds.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--progress/--no-progress", default=True, show_default=True)
def import_cmd(register: str, file: str, progress: bool) -> None:
    """Import a register's JSON Lines FILE; exit code 1 if any record was rejected.

    Idempotent: records are matched on the register's natural key and unchanged resources are
    not written again. Import order for a fresh database: enhet, hpr, freg, flr, ar.
    """
    started = time.perf_counter()
    summary = run_registry_import(Settings.from_env(), register, file, progress=progress)
    click.echo(summary.render())
    click.echo(f"Took {time.perf_counter() - started:.1f} s.")
    sys.exit(1 if summary.rejected else 0)


@registry.command("municipalities")
def municipalities_cmd() -> None:
    """Store one Organization per municipality (kommune-<number>) where none exists yet."""
    counts = run_load_municipalities(Settings.from_env())
    click.echo(f"Municipalities: {counts.created} created, {counts.unchanged} already there.")


registry.add_command(sync)
