"""Composition root: builds the store, registry and settings, and mounts the HTTP apps."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from akson.api.fhir.context import FhirContext
from akson.api.fhir.searchparameters import ReindexWorker
from akson.api.http import FhirApp
from akson.api.openapi import openapi_document
from akson.config import Settings
from akson.export_worker import ExportWorker
from akson.fhir.searchparams import SearchParamRegistry
from akson.idp import SMART_CONFIGURATION_PATH, IdentityProvider
from akson.store.database import connect
from akson.store.repository import ResourceStore

log = logging.getLogger("akson")


class Akson:
    """The whole server as one ASGI callable: `/fhir` on the fast path, the rest on Starlette."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.ctx: FhirContext | None = None
        self.exports: ExportWorker | None = None
        self.reindexer: ReindexWorker | None = None
        self.fhir = FhirApp(self._context)
        self.idp = IdentityProvider(self.settings, lambda: self._context().store)
        self.site = Starlette(routes=[
            Route("/", _index),
            Route("/health", self._health),
            Route("/openapi.json", _openapi),
            *self.idp.routes(),
        ])

    def _context(self) -> FhirContext:
        assert self.ctx is not None, "the server has not started"
        return self.ctx

    async def startup(self) -> None:
        # A copy: stored SearchParameters are added to this server's registry, not the shared one.
        registry = SearchParamRegistry.default().copy()
        db = connect(self.settings.database_url, pool_size=self.settings.pool_size)
        await db.open()
        self.ctx = FhirContext(ResourceStore(db, registry), registry, self.settings)
        self.reindexer = ReindexWorker(self.ctx.store, registry)
        try:
            await self.reindexer.load()
        except Exception as exc:  # noqa: BLE001 - e.g. not migrated yet: the worker retries
            log.error("could not load stored SearchParameters type=%s", type(exc).__name__)
        self.reindexer.start()
        self.exports = ExportWorker(self.ctx.store, self.settings.export_dir,
                                    retention_seconds=self.settings.export_retention_seconds)
        self.exports.start()
        log.warning("Akson serves WITHOUT authentication (trust services are not built yet); "
                    "keep it on a loopback address")

    async def shutdown(self) -> None:
        if self.reindexer is not None:  # before the database closes: it requeues a running job
            await self.reindexer.stop()
            self.reindexer = None
        if self.exports is not None:  # before the database closes: it requeues a running job
            await self.exports.stop()
            self.exports = None
        if self.ctx is not None:
            await self.ctx.store.db.close()
            self.ctx = None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
        elif (kind == "http" and (scope["path"] == "/fhir" or scope["path"].startswith("/fhir/"))
              and scope["path"] != SMART_CONFIGURATION_PATH):
            await self.fhir(scope, receive, send)
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
