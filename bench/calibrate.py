"""Measure the load generator's own ceiling against a trivial fixed-response HTTP server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from loadgen import PhaseStats, build_request, install_fast_loop, run_phase
from serverproc import free_port

BODY = b'{"resourceType":"Patient","id":"x"}'
FIXED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
)


async def _serve_trivial(port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        await reader.readexactly(int(line.split(b":", 1)[1]))
                writer.write(FIXED)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


class _Fixed:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def next_request(self) -> tuple[bytes, None]:
        return self.raw, None

    def on_response(self, ctx: None, resp: object) -> None:
        return None


def measure_client(clients: int, duration: float) -> PhaseStats:
    """Run the trivial server in a child process and hammer it with the load generator."""
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("trivial server failed to start")
        raw = build_request("GET", "/fhir/Patient/x", f"127.0.0.1:{port}")
        return asyncio.run(
            run_phase(
                "client ceiling (trivial server)",
                "127.0.0.1",
                port,
                _Fixed(raw),
                clients,
                duration,
                warmup=0.5,
            )
        )
    finally:
        child.terminate()
        child.wait(5)


if __name__ == "__main__":
    install_fast_loop()
    asyncio.run(_serve_trivial(int(sys.argv[1])))
