"""The `akson` command line: serve, db upgrade, import, reindex."""

from __future__ import annotations

import importlib
import logging
import os
import sys

import click

from akson.config import Settings


class _Commands(click.Group):
    """`akson`'s commands; those kept in modules of their own are imported when named, so a
    command does not load every other's dependencies first (`akson import` started 0.6 s later
    when it loaded the identity provider for `akson token`)."""

    ELSEWHERE = {"audit": "akson.audit_cli:audit", "registry": "akson.registry_cli:registry",
                 "results": "akson.results_cli:results", "token": "akson.idp_cli:token"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.ELSEWHERE})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self.ELSEWHERE.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, name = target.split(":")
        command: click.Command = getattr(importlib.import_module(module), name)
        return command


@click.group(cls=_Commands)
@click.version_option(package_name="akson")
def main() -> None:
    """Akson — a FHIR-native shared health record. Database from AKSON_DATABASE_URL."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request URL at INFO; URLs can carry search values (national ids).
    logging.getLogger("httpx").setLevel(logging.WARNING)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind.")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=None, type=int,
              help="Worker processes (default: 1 on SQLite, number of cores on PostgreSQL).")
@click.option("--migrate/--no-migrate", default=True, show_default=True,
              help="Apply database migrations before serving.")
def serve(host: str, port: int, workers: int | None, migrate: bool) -> None:
    """Serve FHIR R4 at /fhir (and /health, /openapi.json)."""
    import uvicorn

    from akson.serving import Workers

    settings = Settings.from_env()
    if settings.environment != "production" and host not in ("127.0.0.1", "::1", "localhost"):
        # Outside production the built-in provider logs anyone in as anyone (a demo login).
        raise click.UsageError(
            f"--host {host}: outside AKSON_ENVIRONMENT=production the built-in demo login is "
            "on, so Akson serves on the loopback address only. Set AKSON_ENVIRONMENT=production "
            "and AKSON_TRUSTED_ISSUERS to serve on a network.")
    if migrate:
        from akson.store.migrate import upgrade

        upgrade(settings.database_url)
    if workers is None:
        workers = 1 if settings.database_url.startswith("sqlite") else (os.cpu_count() or 1)
    click.echo(f"Akson FHIR R4 at http://{host}:{port}/fhir  (metadata: /fhir/metadata)")
    click.echo(f"Results lookup at http://{host}:{port}/results/fhir; labs deliver to "
               f"POST http://{host}:{port}/results/ingest (docs/results.md)")
    if settings.environment == "production":
        click.echo("Production: tokens only from the issuers in AKSON_TRUSTED_ISSUERS "
                   "(the built-in provider under /auth is off)")
    else:
        click.echo(login_help(f"http://{host}:{port}"))
    config = uvicorn.Config("akson.app:create_app", factory=True, host=host, port=port,
                            access_log=False,  # URLs carry national ids: never log them
                            log_level="warning", lifespan="on", server_header=False)
    if workers > 1:
        started = Workers(config, workers).run()
    else:
        server = uvicorn.Server(config)
        server.run()
        started = server.started
    if not started:
        raise click.ClickException("Akson failed to start (see the log above)")


#: A fixed PKCE pair for the printed demo login link (RFC 7636 appendix B): the link is for a
#: person trying the login page by hand, never for an app (an app makes a fresh verifier).
_DEMO_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
_DEMO_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def login_help(origin: str) -> str:
    """How to get an access token from the built-in provider (printed by `akson serve`)."""
    from urllib.parse import urlencode

    query = urlencode({"response_type": "code", "client_id": "akson-web",
                       "redirect_uri": "http://localhost:3000/callback",
                       "scope": "openid fhirUser user/*.cruds", "state": "demo",
                       "aud": f"{origin}/fhir", "code_challenge": _DEMO_CHALLENGE,
                       "code_challenge_method": "S256"})
    return "\n".join([
        "Every FHIR request but /fhir/metadata needs an access token:",
        f"  system client:  curl -H \"Authorization: Bearer $(akson token --url {origin})\" "
        f"{origin}/fhir/Patient",
        f"  log in as a demo user (practitioner or citizen; see `akson demo`): {origin}/auth/"
        f"authorize?{query}",
        "    then exchange the code from the redirect: curl -d grant_type=authorization_code "
        "-d client_id=akson-web -d redirect_uri=http://localhost:3000/callback "
        f"-d code_verifier={_DEMO_VERIFIER} -d code=<code> {origin}/auth/token",
    ])


@main.group()
def db() -> None:
    """Database administration."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations (Alembic) to the database in AKSON_DATABASE_URL."""
    from akson.store.migrate import upgrade

    upgrade(Settings.from_env().database_url, revision)
    click.echo("Database is at revision " + revision)


@db.command("counts")
@click.option("--at-least", default=None, type=click.IntRange(1),
              help="Promote codes with at least this many index rows (default: the server's "
                   "threshold, akson.store.token_counts.PROMOTE_AT).")
def db_counts(at_least: int | None) -> None:
    """Maintain the counts of the common codes now (PostgreSQL; ADR 0019), e.g. after a bulk
    load, rather than after the first `_total=accurate` search of each."""
    import asyncio

    from akson.store import token_counts
    from akson.store.database import connect

    async def promote_all() -> int:
        db = connect(Settings.from_env().database_url, pool_size=1)
        await db.open()
        try:
            if db.dialect != "postgresql":
                return -1
            async with db.transaction(write=False) as tx:
                keys = await token_counts.common_keys(tx, at_least or token_counts.PROMOTE_AT)
            for key in keys:  # one short lock each, not one long one
                async with db.transaction(write=True) as tx:
                    await token_counts.promote(tx, key)
            return len(keys)
        finally:
            await db.close()

    promoted = asyncio.run(promote_all())
    click.echo("SQLite counts every total as it is asked: nothing to maintain" if promoted < 0
               else f"counts maintained from now on for {promoted} more codes")


@main.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
def import_cmd(paths: tuple[str, ...]) -> None:
    """Load transaction/batch Bundles (.json) or NDJSON files (.ndjson), or folders of them."""
    from akson.fhir.outcome import FhirError
    from akson.importer import run_import

    try:
        summary = run_import(Settings.from_env(), list(paths))
    except FhirError as err:  # e.g. 403: an update the access gate refused; earlier chunks stay
        raise click.ClickException(f"import stopped ({err.status}): {err.diagnostics}") from None
    click.echo(summary.render())
    sys.exit(0 if not summary.rejected else 1)


@main.command()
@click.option("--municipalities", default=2, show_default=True, type=click.IntRange(1, 357),
              help="How many municipalities (one big one always among them).")
@click.option("--persons", default=200, show_default=True, type=click.IntRange(10),
              help="How many persons in all.")
@click.option("--seed", default=1, show_default=True, type=int,
              help="Same seed, same resources and ids.")
@click.option("--if-empty", is_flag=True, help="Do nothing when the database holds resources.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def demo(municipalities: int, persons: int, seed: int, if_empty: bool, progress: bool) -> None:
    """Load a deterministic synthetic Norway: registers, GP lists and clinical history.

    Only synthetic persons (Tenor-style national ids, birth month + 80). Prints the demo users
    to log in as.
    """
    from akson.demo import render_users, run_demo

    if persons < 10 * municipalities:
        raise click.BadParameter("at least 10 persons per municipality", param_hint="--persons")
    result = run_demo(Settings.from_env(), municipalities, persons, seed, if_empty,
                      progress=progress)
    if result is None:
        click.echo("Database already holds data; demo not loaded.")
        return
    stats, users = result
    click.echo(stats.render())
    from akson.demo.results import deliver

    delivered = deliver(Settings.from_env(), seed)
    click.echo(f"{delivered} demo lab results delivered to the results service (/results/fhir)")
    click.echo(render_users(users))


@main.command()
@click.option("--param", "code", default=None,
              help="Reindex only the search parameter(s) with this code (default: every index "
                   "row of every resource).")
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(1),
              help="Resources per transaction.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def reindex(code: str | None, batch: int, progress: bool) -> None:
    """Rebuild search-index rows in the database of AKSON_DATABASE_URL, batch by batch.

    Safe while servers run: each batch is its own short transaction, and servers warn on
    searches of a parameter while its job runs (docs/search-parameters.md).
    """
    import asyncio

    sys.exit(asyncio.run(_reindex(Settings.from_env(), code, batch, progress)))


async def _reindex(settings: Settings, code: str | None, batch: int, progress: bool) -> int:
    """Queue one job per parameter (or one `all` job), claim it at once and run it here."""
    import uuid

    from tqdm import tqdm

    from akson.api.fhir.searchparameters import ReindexWorker, run_job
    from akson.fhir import dates
    from akson.fhir.searchparams import SearchParamRegistry
    from akson.store import reindex as store_reindex
    from akson.store.database import connect
    from akson.store.repository import ResourceStore

    registry = SearchParamRegistry.default().copy()
    db = connect(settings.database_url, pool_size=2)
    await db.open()
    try:
        store = ResourceStore(db, registry)
        await ReindexWorker(store, registry).load()  # stored SearchParameters too
        if code is None:
            targets: list[tuple[str, str, str, tuple[str, ...]]] = [
                ("all", "*", "*", ("Resource",))]
        else:
            targets = [("index", p.url, p.code, p.base) for p in registry if p.code == code]
            if not targets:
                click.echo(f"No search parameter has the code {code!r}", err=True)
                return 2
        worker = str(uuid.uuid4())
        for action, url, pcode, base in targets:
            now = dates.now_us()
            async with store.session(write=True) as s:  # queued and claimed in one transaction
                job_id = await store_reindex.enqueue(s, action, url, pcode, base, None, now)
                await store_reindex.claim(s, job_id, worker, now, now)
                job = await store_reindex.get_job(s, job_id)
            assert job is not None
            label = "all parameters" if action == "all" else f"{pcode} ({url})"
            with tqdm(desc=label, unit="res", disable=not progress) as bar:

                def show(done: int, total: int | None, bar: tqdm = bar) -> None:
                    bar.total = total
                    bar.update(done - bar.n)

                status, error = await run_job(store, registry, job, worker, batch_rows=batch,
                                              progress=show)
            click.echo(f"{label}: {status}" + (f" ({error})" if error else ""))
        return 0
    finally:
        await db.close()
