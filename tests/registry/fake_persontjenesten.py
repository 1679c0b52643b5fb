"""A Fake of Persontjenesten's event API (docs/registers.md, Event feed over HTTP), served over
real HTTP on a loopback port so `HttpFeed` is tested at the true outer edge.

It serves `events` (raw dicts, or any JSON value to model a broken item) in the order the
contract promises — ascending sequence — unless `as_given` is set, which serves them in list
order to model a misbehaving server. `token` makes it demand that bearer token; `fail_next`
makes the next requests answer that HTTP status. `requests` records each query string.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tests.conftest import free_port

MAX_PAGE_SIZE = 1000


class FakePersontjenesten:
    def __init__(self, events: list[Any], *, token: str | None = None, as_given: bool = False):
        self.events = events
        self.token = token
        self.as_given = as_given
        self.fail_next: list[int] = []
        self.requests: list[dict[str, str]] = []
        self.port = free_port()
        app = Starlette(routes=[Route("/api/event", self._page),
                                Route("/api/event/latest", self._latest)])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FakePersontjenesten:
        self.thread.start()
        started = threading.Event()
        while not self.server.started and self.thread.is_alive():
            started.wait(0.01)
        if not self.server.started:
            raise RuntimeError("the fake Persontjenesten did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def _refused(self, request: Request) -> Response | None:
        if self.fail_next:
            return Response(status_code=self.fail_next.pop(0))
        if request.headers.get("api-version") != "2":
            return JSONResponse({"error": "api-version header 2 required"}, status_code=400)
        if self.token and request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return None

    def _sorted(self) -> list[Any]:
        if self.as_given:
            return list(self.events)
        return sorted(self.events, key=_sequence)

    async def _page(self, request: Request) -> Response:
        self.requests.append(dict(request.query_params))
        refused = self._refused(request)
        if refused:
            return refused
        try:
            start = int(request.query_params["fromSequenceNumber"])
            size = int(request.query_params.get("pageSize", "100"))
        except (KeyError, ValueError):
            return JSONResponse({"error": "fromSequenceNumber and pageSize are integers"},
                                status_code=400)
        if not 1 <= size <= MAX_PAGE_SIZE:
            return JSONResponse({"error": f"pageSize is 1..{MAX_PAGE_SIZE}"}, status_code=400)
        # A broken item with no sequence is served on the first page only.
        page = [e for e in self._sorted()
                if _sequence(e) >= start or (_sequence(e) == 0 and start <= 1)][:size]
        return JSONResponse(page)

    async def _latest(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused:
            return refused
        return JSONResponse({"sequence": max((_sequence(e) for e in self.events), default=0)})


def _sequence(item: Any) -> int:
    """An item's sequence; 0 for a broken item without one (sorted first)."""
    seq = item.get("sequence") if isinstance(item, dict) else None
    return seq if type(seq) is int else 0
