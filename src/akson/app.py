"""Composition root: builds the store, registry and settings, and mounts the HTTP apps."""

from __future__ import annotations

import hashlib
import hmac
import logging
import socket
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from akson.access.audit import ChainedAuditSink, OrgNames, PatientRef, Source, audit_entry
from akson.access.dpop import dpop_policy_from_settings
from akson.access.gate import Gate
from akson.access.issuers import TrustedIssuers
from akson.access.principal import Principal, from_json
from akson.access.tokens import TokenPolicy
from akson.api.auth import Authenticator, BuiltinIssuer
from akson.api.fhir.context import FhirContext
from akson.api.fhir.messages import FhirRequest, FhirResponse
from akson.api.fhir.paging import audit_key, keys
from akson.api.fhir.searchparameters import ReindexWorker
from akson.api.http import FhirApp
from akson.api.openapi import openapi_document
from akson.api.results import delivery as results_delivery
from akson.api.results import lookup as results_lookup
from akson.api.results.release_worker import ReleaseWorker
from akson.api.token_count_worker import TokenCountWorker
from akson.config import Settings
from akson.export_worker import ExportWorker
from akson.fhir.dates import now_us
from akson.fhir.outcome import FhirError
from akson.fhir.searchparams import SearchParamRegistry
from akson.idp import SMART_CONFIGURATION_PATH, IdentityProvider
from akson.idp.identity import Identity
from akson.idp.keys import JWKS_FILE
from akson.idp.settings import IdpSettings
from akson.results.ingest import Ingestor
from akson.results.release import ReleasePolicy
from akson.serving import worker_index
from akson.store import export as store_export
from akson.store.audit_log import AuditLog
from akson.store.database import connect
from akson.store.replay_guard import DatabaseReplayCache
from akson.store.repository import ResourceStore

log = logging.getLogger("akson")


class Akson:
    """The whole server as one ASGI callable: `/fhir` on the fast path, the rest on Starlette.

    Every FHIR request but `metadata` is authenticated (`akson.api.auth`: the trusted issuers of
    `AKSON_TRUSTED_ISSUERS` and the built-in provider under `/auth`) and runs in a session of the
    access gate (`akson.access.gate`), audited into the hash-chained log.
    """

    def __init__(self, settings: Settings | None = None, *, idp_settings: IdpSettings | None = None,
                 idp_clock: Callable[[], float] | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.ctx: FhirContext | None = None
        self.exports: ExportWorker | None = None
        self.reindexer: ReindexWorker | None = None
        self.token_counts: TokenCountWorker | None = None
        self.audit_log: AuditLog | None = None
        self.audit_sink: ChainedAuditSink | None = None
        self.ingestor: Ingestor | None = None
        self.releaser: ReleaseWorker | None = None
        #: Fails at once on a malformed AKSON_RESULTS_RELEASE_DELAY, before anything starts.
        self.release_policy = ReleasePolicy.parse(self.settings.results_release_delay)
        self.source = Source(site=self.settings.audit_site or socket.gethostname())
        self.fhir = FhirApp(self._context)
        self.results_fhir = FhirApp(self._context, prefix="/results/fhir",
                                    handle=results_lookup.handle)
        self.results = FhirApp(self._context, prefix="/results", handle=self._results,
                               negotiate=results_delivery.negotiate)
        self.idp = IdentityProvider(self.settings, lambda: self._context().store,
                                    idp_settings=idp_settings, clock=idp_clock,
                                    on_login=self._audit_login)
        # The built-in provider lets anyone pick a practitioner or citizen to log in as: it is
        # for development, demos and tests. Production trusts only AKSON_TRUSTED_ISSUERS.
        self.builtin_idp = self.settings.environment != "production"
        self.auth = authenticator(self.settings, self.idp if self.builtin_idp else None)
        self.site = Starlette(routes=[
            Route("/", _index),
            Route("/health", self._health),
            Route("/openapi.json", _openapi),
            *(self.idp.routes() if self.builtin_idp else ()),
        ])

    def _context(self) -> FhirContext:
        assert self.ctx is not None, "the server has not started"
        return self.ctx

    async def startup(self) -> None:
        # A copy: stored SearchParameters are added to this server's registry, not the shared one.
        registry = SearchParamRegistry.default().copy()
        db = connect(self.settings.database_url, pool_size=self.settings.pool_size)
        await db.open()
        store = ResourceStore(db, registry)
        self.audit_log = AuditLog(db, key=audit_key(self.settings.database_url),
                                  chains=self.settings.audit_chains, lane=worker_index())
        self.audit_sink = ChainedAuditSink(
            self.audit_log, self.source, behind=self.settings.audit_reads_behind_ms / 1000)
        gate = Gate(store, self.audit_sink)
        self.ctx = FhirContext(store, registry, self.settings, gate, self.auth)
        self.ingestor = Ingestor(gate, self.release_policy)
        self.releaser = ReleaseWorker(gate)
        self.releaser.start()
        self.reindexer = ReindexWorker(self.ctx.store, registry)
        try:
            await self.reindexer.load()
        except Exception as exc:  # noqa: BLE001 - e.g. not migrated yet: the worker retries
            log.error("could not load stored SearchParameters type=%s", type(exc).__name__)
        self.reindexer.start()
        self.exports = ExportWorker(self.ctx.store, self.settings.export_dir,
                                    retention_seconds=self.settings.export_retention_seconds,
                                    access=self._export_access, audit=self._export_audit)
        self.exports.start()
        if db.dialect == "postgresql":
            self.token_counts = TokenCountWorker(self.ctx.store)
            self.token_counts.start()
        log.info("Akson requires an access token on every FHIR request but /fhir/metadata; "
                 "trusted issuers: %d configured%s", len(self.auth.issuers),
                 " plus the built-in provider under /auth" if self.builtin_idp
                 else " (production: the built-in provider is off)")

    async def _export_access(self, job: store_export.Job) -> store_export.ExportAccess | None:
        """The requester's restriction for an export job, computed now from the principal stored
        at kick-off and the data (akson.access.gate); a job without one is refused."""
        async with self._context().gate.session(_requester(job)) as g:
            if not g.plan.allowed:
                raise FhirError(403, "The requester may no longer export", "forbidden")
            return g.export_access()

    async def _export_audit(self, job: store_export.Job, res_type: str,
                            patients: Sequence[str]) -> None:
        """An export chunk's audit record, in the requester's name."""
        async with self._context().gate.session(_requester(job)) as g:
            await g.record_export(res_type, patients)

    async def _audit_login(self, identity: Identity, client_id: str) -> None:
        """A completed login at the built-in provider, as an AuditEvent of subtype `login`."""
        if self.audit_log is None:
            return
        workplace = identity.workplace
        principal = Principal(
            kind=identity.kind, issuer="akson-idp", subject=identity.fhir_user,
            client_id=client_id, name=identity.name, hpr_number=identity.hpr_number,
            orgnr_parent=workplace.parent_orgnr if workplace else None,
            orgnr_child=workplace.unit_orgnr if workplace else None)
        own = identity.fhir_user.removeprefix("Patient/") if identity.kind == "citizen" else None
        patients = [PatientRef(p) for p in (own or identity.launch_patient,) if p]
        names = OrgNames(workplace.parent_name, workplace.unit_name) if workplace else OrgNames()
        entry = audit_entry(principal, action="E", subtype="login", recorded=now_us(),
                            source=self.source, patients=patients, names=names)
        await self.audit_log.record(entry, route=uuid.uuid4().hex)

    async def _results(self, ctx: FhirContext, req: FhirRequest) -> FhirResponse:
        assert self.ingestor is not None, "the server has not started"
        return await results_delivery.handle(ctx, req, self.ingestor)

    async def shutdown(self) -> None:
        if self.releaser is not None:
            await self.releaser.stop()
            self.releaser = None
        if self.reindexer is not None:  # before the database closes: it requeues a running job
            await self.reindexer.stop()
            self.reindexer = None
        if self.exports is not None:  # before the database closes: it requeues a running job
            await self.exports.stop()
            self.exports = None
        if self.token_counts is not None:
            await self.token_counts.stop()
            self.token_counts = None
        if self.audit_sink is not None:  # before the database closes: routine read records
            await self.audit_sink.close()
            self.audit_sink = None
        if self.ctx is not None:
            await self.ctx.store.db.close()
            self.ctx = None
        if isinstance(self.auth.dpop.replay, DatabaseReplayCache):
            self.auth.dpop.replay.close()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
        elif (kind == "http" and (scope["path"] == "/fhir" or scope["path"].startswith("/fhir/"))
              and scope["path"] != SMART_CONFIGURATION_PATH):
            await self.fhir(scope, receive, send)
        elif kind == "http" and scope["path"].startswith("/results/"):
            path = scope["path"]
            fhir = path == "/results/fhir" or path.startswith("/results/fhir/")
            await (self.results_fhir if fhir else self.results)(scope, receive, send)
        else:
            await self.site(scope, receive, send)

    async def _lifespan(self, receive: Callable, send: Callable) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:  # noqa: BLE001 - reported to the server, which exits
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _health(self, request: Request) -> Response:
        if self.ctx is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        try:
            async with self.ctx.store.session(write=False) as s:
                await s.tx.fetchone("SELECT 1")
        except Exception:  # noqa: BLE001 - health reports, it does not raise
            return JSONResponse({"status": "database unavailable"}, status_code=503)
        return JSONResponse({"status": "ok", "database": self.ctx.store.db.dialect})


def authenticator(settings: Settings, idp: IdentityProvider | None) -> Authenticator:
    """The FHIR API's token verification: the configured issuers (`AKSON_TRUSTED_ISSUERS`) and,
    unless `idp` is None, the built-in provider, trusted through the JWKS file beside its keys
    (akson.api.auth)."""
    builtin = None if idp is None else BuiltinIssuer(
        idp.settings.key_dir / JWKS_FILE, issuer=idp.settings.issuer,
        audiences=(*([settings.audience] if settings.audience else []), *idp.settings.audiences))
    # DPoP nonces are MACed under a key derived from the installation secret, so every worker
    # process accepts every other's nonces.
    nonce_secret = hmac.new(keys(settings.database_url)[1], b"akson dpop nonce",
                            hashlib.sha256).digest()
    # Accepted DPoP proofs are remembered in the database, so a proof replayed to another
    # worker or server is refused too.
    return Authenticator(TrustedIssuers.from_settings(settings), builtin=builtin,
                         policy=TokenPolicy.from_settings(settings),
                         dpop=dpop_policy_from_settings(
                             settings, nonce_secret=nonce_secret,
                             replay=DatabaseReplayCache(settings.database_url)))


async def _index(request: Request) -> Response:
    return HTMLResponse(
        "<!doctype html><html lang='nb'><meta charset='utf-8'><title>Akson</title>"
        "<h1>Akson</h1><p>FHIR R4: <a href='/fhir/metadata'>/fhir/metadata</a> · "
        "OpenAPI: <a href='/openapi.json'>/openapi.json</a> · <a href='/health'>/health</a></p>"
    )


async def _openapi(request: Request) -> Response:
    return JSONResponse(openapi_document(str(request.base_url).rstrip("/")))


def create_app(settings: Settings | None = None) -> Any:
    """The ASGI application (uvicorn's factory target: `akson.app:create_app`)."""
    return Akson(settings)


def _requester(job: store_export.Job) -> Principal:
    """Who kicked an export job off (stored with it); a job without one is refused."""
    principal = from_json(orjson.loads(job.params).get("principal"))
    if principal is None:
        raise FhirError(403, "The export job names no requester this server can act for",
                        "forbidden")
    return principal
