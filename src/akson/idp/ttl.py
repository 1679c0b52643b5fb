"""A small in-memory map whose entries expire: the provider's short-lived state lives in these.

The built-in provider is a development and demo provider for one process: codes, pending
logins, login sessions, refresh tokens and replay caches are kept here and are lost on restart
(users log in again; system clients just ask for a new token).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

Clock = Callable[[], float]


class TtlMap(Generic[K, V]):
    """Key → value until an expiry time (seconds since the epoch, from `clock`)."""

    def __init__(self, clock: Clock = time.time, max_entries: int = 100_000) -> None:
        self._clock = clock
        self._max = max_entries
        self._items: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def put(self, key: K, value: V, expires_at: float) -> None:
        """Store `key`; when full of live entries the oldest is dropped (bounded memory: a flood
        of abandoned logins cannot exhaust the process, it only ends the oldest ones)."""
        with self._lock:
            if len(self._items) >= self._max:
                self._purge()
                while len(self._items) >= self._max:
                    del self._items[next(iter(self._items))]
            self._items[key] = (expires_at, value)

    def add(self, key: K, value: V, expires_at: float) -> bool:
        """Insert unless a live entry exists (atomic check-and-set); True when inserted.

        A replay cache must not forget early, so when full of live entries this refuses (fails
        closed) instead of dropping one.
        """
        with self._lock:
            found = self._items.get(key)
            if found is not None and found[0] > self._clock():
                return False
            if len(self._items) >= self._max:
                self._purge()
                if len(self._items) >= self._max:
                    return False
            self._items[key] = (expires_at, value)
            return True

    def get(self, key: K) -> V | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return None
            if found[0] <= self._clock():
                del self._items[key]
                return None
            return found[1]

    def pop(self, key: K) -> V | None:
        """Remove and return a live entry (the one-time use of a code)."""
        with self._lock:
            found = self._items.pop(key, None)
            if found is None or found[0] <= self._clock():
                return None
            return found[1]

    def values(self) -> Iterator[V]:
        with self._lock:
            now = self._clock()
            live = [v for exp, v in self._items.values() if exp > now]
        return iter(live)

    def _purge(self) -> None:
        now = self._clock()
        for key in [k for k, (exp, _) in self._items.items() if exp <= now]:
            del self._items[key]
