"""Values derived from an object that is reused across requests, kept by the object's identity."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class ByIdentity(Generic[V]):
    """Keeps `make()`'s value for an object, found again by that very object (`is`), not by
    equality: hashing a large frozen dataclass costs more than what is kept. A token's
    `Principal` is one object for every request with that token (akson.access.tokens), so
    what follows from the principal alone is made once per token.

    An entry holds its object, so the object's `id` is not reused while the entry lives.
    `extra` is compared by equality and must match too. When `size` entries are held, all are
    dropped (tokens last minutes: a full memo is mostly expired ones).
    """

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._entries: dict[int, tuple[object, Hashable, V]] = {}

    def get(self, obj: object, make: Callable[[], V], extra: Hashable = None) -> V:
        found = self._entries.get(id(obj))
        if found is not None and found[0] is obj and (found[1] is extra or found[1] == extra):
            return found[2]
        value = make()
        if len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[id(obj)] = (obj, extra, value)
        return value

    def __len__(self) -> int:
        return len(self._entries)
