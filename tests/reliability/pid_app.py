"""A tiny ASGI app answering with its worker's process id and worker number (for
tests/reliability/test_serving)."""

from __future__ import annotations

import os
from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    body = f"{os.getpid()} {os.environ.get('AKSON_WORKER', '-')}"
    await send({"type": "http.response.body", "body": body.encode()})
