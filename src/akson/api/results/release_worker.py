"""Lifts NORU from held results once their delay has run, every minute while the server runs
(akson.results.release)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from akson.access.gate import Gate
from akson.api.polling_worker import PollingWorker
from akson.results.release import release_now

log = logging.getLogger("akson.results")


class ReleaseWorker(PollingWorker):
    """One `release_now` pass per `poll_seconds`."""

    name = "akson-results-release"
    poll_seconds = 60.0

    def __init__(self, gate: Gate) -> None:
        super().__init__()
        self.gate = gate

    async def run_once(self) -> bool:
        released = await release_now(self.gate, datetime.now(UTC))
        if released:
            log.info("released %d held results to citizens", released)
        return False  # one pass, then wait: due results are not a queue to drain

    async def release_current(self) -> None:
        """Nothing is held between passes."""
