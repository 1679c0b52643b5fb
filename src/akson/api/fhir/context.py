"""What an interaction needs from the running server: the store, the registry, the settings and
the access gate every read and write passes (akson.access.gate)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from akson.access.gate import Gate
from akson.config import Settings
from akson.fhir.searchparams import SearchParamRegistry
from akson.store.repository import ResourceStore


@dataclass(frozen=True)
class FhirContext:
    store: ResourceStore
    registry: SearchParamRegistry
    settings: Settings
    #: The one access gate (ADR 0006): handlers get a `GuardedSession` from it, never a bare
    #: store session.
    gate: Gate
    #: The request authenticator (akson.api.auth.Authenticator); None (an in-process caller
    #: such as `akson import`, which sets the principal itself) makes the HTTP app refuse
    #: every request but `metadata`.
    auth: Any = None
