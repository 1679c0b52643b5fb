"""`akson results`: deliver result files (`ingest`), listen for HL7 v2 over MLLP (`mllp`), lift
delayed-release labels (`release`), and work the operators' inbox (`queue`, `match`, `retry`,
`discard`). Each acts as a local system client through the access gate, audited like any other.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import click
from tqdm import tqdm

from akson.access.audit import ChainedAuditSink, Source
from akson.access.gate import Gate
from akson.access.principal import Principal
from akson.access.scopes import parse_scopes
from akson.api.fhir.paging import audit_key
from akson.config import Settings
from akson.fhir.outcome import FhirError
from akson.fhir.searchparams import SearchParamRegistry
from akson.results import hl7v2, mllp
from akson.results.ingest import MAX_MESSAGE_BYTES, Ingestor, format_of
from akson.results.release import ReleasePolicy, release_now
from akson.store import results_inbox as inbox
from akson.store.audit_log import AuditLog
from akson.store.database import connect
from akson.store.migrate import upgrade
from akson.store.repository import ResourceStore


def local_principal(name: str) -> Principal:
    """An operator's local system client: every scope, its own name in the audit log."""
    return Principal(kind="system", issuer="akson:local", subject=name, client_id=name,
                     scopes=parse_scopes("system/*.*"))


@asynccontextmanager
async def local_ingestor(settings: Settings) -> AsyncIterator[Ingestor]:
    db = connect(settings.database_url, pool_size=4)
    await db.open()
    try:
        store = ResourceStore(db, SearchParamRegistry.default().copy())
        sink = ChainedAuditSink(AuditLog(db, key=audit_key(settings.database_url),
                                         chains=settings.audit_chains),
                                Source(site=settings.audit_site or socket.gethostname()))
        yield Ingestor(Gate(store, sink), ReleasePolicy.parse(settings.results_release_delay))
    finally:
        await db.close()


@click.group()
def results() -> None:
    """The national results service: delivery, MLLP, release and the operators' inbox."""


@results.command("ingest")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--progress/--no-progress", default=True, show_default=True)
def ingest_cmd(paths: tuple[Path, ...], progress: bool) -> None:
    """Deliver result messages from files and folders (KITH XML, HL7 v2, FHIR Bundles; the format
    is read from the bytes). Prints a summary; exits 1 when any file was rejected."""
    settings = Settings.from_env()
    upgrade(settings.database_url)
    files = sorted({f for p in paths for f in ([p] if p.is_file() else p.rglob("*"))
                    if f.is_file() and not f.name.startswith(".")})
    states = asyncio.run(_ingest_files(settings, files, progress))
    click.echo(f"{len(files)} files: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))
    if states.get(inbox.REJECTED) or states.get("unknown format"):
        raise SystemExit(1)


async def _ingest_files(settings: Settings, files: list[Path], progress: bool) -> Counter[str]:
    states: Counter[str] = Counter()
    principal = local_principal("akson-results-ingest")
    async with local_ingestor(settings) as ingestor:
        for path in tqdm(files, unit="msg", disable=not progress, desc="ingest"):
            data = path.read_bytes()
            fmt = format_of(None, data)
            if fmt is None:
                states["unknown format"] += 1
                click.echo(f"{path.name}: not KITH XML, HL7 v2 or a FHIR Bundle", err=True)
                continue
            delivery = await ingestor.ingest(principal, data, fmt)
            states[delivery.state] += 1
            for e in delivery.receipt.errors:
                click.echo(f"{path.name}: rejected ({e.code} {e.reason}): {e.text}", err=True)
    return states


@results.command("mllp")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Bind address. MLLP carries no credentials: expose it only on a trusted "
                   "network (e.g. Helsenett), never publicly.")
@click.option("--port", default=2575, show_default=True, type=int)
def mllp_cmd(host: str, port: int) -> None:
    """Listen for HL7 v2 ORU^R01 over MLLP, answering each message with an ACK (AA) or a NAK
    (AE/AR with the reason)."""
    settings = Settings.from_env()
    upgrade(settings.database_url)
    asyncio.run(_serve_mllp(settings, host, port))


def mllp_handler(ingestor: Ingestor, principal: Principal
                 ) -> Callable[[bytes], Awaitable[bytes]]:
    """What the MLLP listener does with each message: deliver it, answer the ACK or NAK."""

    async def handle(message: bytes) -> bytes:
        delivery = await ingestor.ingest(principal, message, "hl7v2")
        r = delivery.receipt
        return hl7v2.ack(message, accepted=not r.errors,
                         error="; ".join(e.text for e in r.errors) or None,
                         code=r.errors[0].code if r.errors else None)

    return handle


async def _serve_mllp(settings: Settings, host: str, port: int) -> None:
    async with local_ingestor(settings) as ingestor:
        server = await mllp.serve(mllp_handler(ingestor, local_principal("akson-results-mllp")),
                                  host, port, max_frame=MAX_MESSAGE_BYTES)
        bound = server.sockets[0].getsockname()
        click.echo(f"MLLP listener on {bound[0]}:{bound[1]}")
        async with server:
            await server.serve_forever()


@results.command("release")
@click.option("--at", "at", default=None, help="Release as of this instant (ISO 8601; default "
              "now), e.g. to check the configured delays.")
def release_cmd(at: str | None) -> None:
    """Lift NORU from held results whose release time has come (the server does this every
    minute by itself)."""
    settings = Settings.from_env()
    try:
        when = datetime.fromisoformat(at) if at else datetime.now(UTC)
    except ValueError:
        raise click.BadParameter("not an ISO 8601 instant", param_hint="--at") from None
    if when.tzinfo is None:
        raise click.BadParameter("give a zone, e.g. 2026-12-01T08:00:00+01:00",
                                 param_hint="--at")
    count = asyncio.run(_release(settings, when))
    click.echo(f"released {count} results")


async def _release(settings: Settings, when: datetime) -> int:
    async with local_ingestor(settings) as ingestor:
        return await release_now(ingestor.gate, when)


@results.command("queue")
@click.option("--state", type=click.Choice(inbox.STATES), default=inbox.UNMATCHED,
              show_default=True)
def queue_cmd(state: str) -> None:
    """List deliveries in a state: `unmatched` (manual matching) or `rejected` (quarantine)."""
    settings = Settings.from_env()
    rows = asyncio.run(_listing(settings, state))
    for m in rows:
        when = datetime.fromtimestamp(m.received / 1e6, UTC).isoformat(timespec="seconds")
        click.echo(f"{m.pk}\t{when}\t{m.format}\t{m.sender or '-'}\t{m.reason or ''}\t"
                   f"{m.detail or ''}")
    click.echo(f"{len(rows)} {state}")


async def _listing(settings: Settings, state: str) -> list[inbox.Message]:
    async with local_ingestor(settings) as ingestor, \
            ingestor.gate.store.session(write=False) as s:
        return await inbox.listing(s, state, limit=1000)


@results.command("match")
@click.argument("delivery", type=int)
@click.argument("patient")
@click.option("--report", default=None, help="The unmatched report (its key in the receipt) "
              "when the delivery names several unidentified persons.")
def match_cmd(delivery: int, patient: str, report: str | None) -> None:
    """Store an unmatched delivery's reports in PATIENT's record (`Patient/<id>` or `<id>`)."""
    _reprocess(delivery, patient.removeprefix("Patient/"), report)


@results.command("retry")
@click.argument("delivery", type=int)
def retry_cmd(delivery: int) -> None:
    """Run a rejected (quarantined) or unmatched delivery again."""
    _reprocess(delivery, None, None)


def _reprocess(pk: int, patient_id: str | None, report: str | None) -> None:
    settings = Settings.from_env()

    async def run() -> str:
        async with local_ingestor(settings) as ingestor:
            d = await ingestor.reprocess(local_principal("akson-results-operator"), pk,
                                         patient_id=patient_id, report_key=report)
            return d.state

    try:
        click.echo(f"delivery {pk}: {asyncio.run(run())}")
    except FhirError as exc:
        raise click.ClickException(exc.diagnostics) from None


@results.command("discard")
@click.argument("delivery", type=int)
@click.option("--reason", required=True, help="Why it is closed without storing.")
def discard_cmd(delivery: int, reason: str) -> None:
    """Close a waiting delivery without storing it."""
    settings = Settings.from_env()

    async def run() -> None:
        async with local_ingestor(settings) as ingestor:
            await ingestor.discard(local_principal("akson-results-operator"), delivery, reason)

    try:
        asyncio.run(run())
    except FhirError as exc:
        raise click.ClickException(exc.diagnostics) from None
    click.echo(f"delivery {delivery}: {inbox.DISCARDED}")
