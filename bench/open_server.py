"""`akson` of this build without its trust services: `bench/cost.py`'s second *without*.

Every FHIR request is taken as one system client's with `system/*.*` scopes, without reading
its token; every guarded session gets a plan that restricts nothing (no label rule, no record
scope) and an audit sink that records nothing. The FHIR handlers, the store, the indexes and
the serving are this build's, so the difference to `akson serve` is what authentication, the
access gate's rules and the audit log cost — unlike the foundation build, which also lacks
every later change to search, indexing and storage. For benchmarks only: never a server.

The handlers still call the gate's `GuardedSession`, which with nothing to check and nothing
to audit forwards to the store: its session wrapper, plan check and redaction test, a few
Python calls per request, stay in both builds (≈ 10 µs of a read's ≈ 250, docs/performance.md).
`serve` runs in `akson.serving.Workers` like `akson serve` (`base_server.serve`); every other
command (`db upgrade`) is the `akson` CLI. Run with the `bench` directory on `PYTHONPATH`.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from typing import Any

from akson.access import policy as pol
from akson.access.gate import AuditIntent, Gate, GuardedSession
from akson.access.principal import Principal
from akson.access.scopes import parse_scopes
from akson.app import Akson
from akson.store.access_sql import Restriction
from akson.store.database import Tx
from akson.store.repository import Session
from base_server import serve

#: The caller of every request.
CALLER = Principal(kind="system", issuer="bench", subject="akson-bench", client_id="akson-bench",
                   scopes=parse_scopes("system/*.*"))
#: A plan that restricts nothing: every record and type, no label rule.
OPEN_PLAN = pol.Plan(True, "benchmark without the trust services", Restriction(all_patients=True),
                     pol.ALL_INTERACTIONS, CALLER.scopes)


class NoAuthentication:
    """Takes every request as `CALLER`'s, without reading a token."""

    async def authenticate(self, req: Any) -> Principal:
        return CALLER


class NoAudit:
    """An audit sink that records nothing."""

    async def record(self, intent: AuditIntent, tx: Tx | None = None,
                     principal: Principal | None = None) -> None:
        return None

    async def flush(self) -> None:
        return None


class OpenSession(GuardedSession):
    """A guarded session that describes no access for the audit log (no `AuditIntent`)."""

    async def _audit(self, action: str, outcome: str, res_type: str | None,
                     ids: Sequence[str] = (), patients: Sequence[str] = ()) -> None:
        return None


class OpenGate(Gate):
    """`OpenSession`s with `OPEN_PLAN`: no facts looked up, no rule applied, nothing audited."""

    async def guard(self, s: Session, principal: Principal, *, write: bool = False,
                    sink: Any = None) -> GuardedSession:
        return OpenSession(s, principal, OPEN_PLAN, self.sink, self.clock(), write=write)


class OpenAkson(Akson):
    """`akson.app.Akson` with `NoAuthentication`, `OpenGate` and `NoAudit`."""

    async def startup(self) -> None:
        await super().startup()
        ctx = self._context()
        self.ctx = dataclasses.replace(ctx, gate=OpenGate(ctx.store, NoAudit()),
                                       auth=NoAuthentication())


def create_app() -> OpenAkson:
    return OpenAkson()


def main() -> int:
    if sys.argv[1:2] == ["serve"]:
        return serve(sys.argv[2:], app="open_server:create_app")
    from akson.cli import main as akson_main

    akson_main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
