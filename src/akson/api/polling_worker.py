"""A background task that claims jobs from a database table, one at a time, in the server's loop.

Several server processes may share a database, so work is found by polling its job table (one
indexed row read) rather than by in-process signals. Subclasses say how to run one job and how to
hand back the job they hold when the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from akson.fhir.outcome import where

log = logging.getLogger("akson.worker")


class PollingWorker:
    """`run_once()` until it finds nothing, then sleep `poll_seconds` (backing off on errors)."""

    name = "akson-worker"
    poll_seconds: float = 0.5

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        """Stop the loop, then hand back a job in progress so another start can take it."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.release_current()

    async def run_once(self) -> bool:
        """Claim and run one job; False when there was nothing to do."""
        raise NotImplementedError

    async def release_current(self) -> None:
        """Give the job this worker holds (if any) back to the queue."""
        raise NotImplementedError

    async def _loop(self) -> None:
        failures = 0
        while True:
            try:
                ran = await self.run_once()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the worker must outlive a bad moment
                if not failures:  # once per outage (e.g. a database not migrated yet)
                    log.error("%s error type=%s at %s", self.name, type(exc).__name__, where(exc))
                failures += 1
                ran = False
            if not ran:
                await asyncio.sleep(min(self.poll_seconds * 2 ** min(failures, 10), 60.0))
