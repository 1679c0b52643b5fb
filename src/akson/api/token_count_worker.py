"""Keeps the maintained code counts of akson.store.token_counts: promotes the keys searches
found large, and folds their rows (PostgreSQL only; ADR 0019)."""

from __future__ import annotations

import logging

from akson.api.polling_worker import PollingWorker
from akson.store import token_counts
from akson.store.repository import ResourceStore

log = logging.getLogger(__name__)

#: Fold when the keys hold this many rows each on average (one per write since the last).
FOLD_AT = 20.0


class TokenCountWorker(PollingWorker):
    """Each poll: promote one wanted key, else fold when the rows have piled up."""

    name = "akson-token-counts"

    def __init__(self, store: ResourceStore, *, poll_seconds: float = 1.0) -> None:
        super().__init__()
        self.store = store
        self.poll_seconds = poll_seconds

    async def run_once(self) -> bool:
        if token_counts.wanted:
            key = token_counts.wanted.pop()
            async with self.store.session(write=True) as s:
                if await token_counts.promote(s.tx, key):
                    log.info("a code's count is maintained from now on (%s.%s)", key[0], key[1])
            return True
        async with self.store.session(write=False) as s:
            piled = await token_counts.rows_per_key(s.tx) >= FOLD_AT
        if piled:
            async with self.store.session(write=True) as s:
                await token_counts.fold(s.tx)
        return False

    async def release_current(self) -> None:
        """Nothing is held between polls."""
