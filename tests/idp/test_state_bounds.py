"""The provider's in-memory state stays bounded, and its replay cache never forgets early."""

from __future__ import annotations

from akson.idp.ttl import TtlMap


class FixedClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_flood_of_entries_drops_the_oldest_not_the_newest():
    clock = FixedClock()
    pending: TtlMap[str, int] = TtlMap(clock, max_entries=3)
    for i in range(5):
        pending.put(f"login-{i}", i, clock.now + 60)
    assert [pending.get(f"login-{i}") for i in range(5)] == [None, None, 2, 3, 4]


def test_replay_cache_refuses_when_full_instead_of_forgetting():
    clock = FixedClock()
    seen: TtlMap[str, bool] = TtlMap(clock, max_entries=2)
    assert seen.add("jti-1", True, clock.now + 60) and seen.add("jti-2", True, clock.now + 60)
    assert not seen.add("jti-1", True, clock.now + 60), "a replay"
    assert not seen.add("jti-3", True, clock.now + 60), "full: fail closed"
    clock.now += 61
    assert seen.add("jti-3", True, clock.now + 60), "expired entries make room"


def test_entries_expire():
    clock = FixedClock()
    codes: TtlMap[str, str] = TtlMap(clock)
    codes.put("code", "grant", clock.now + 60)
    clock.now += 60
    assert codes.pop("code") is None
