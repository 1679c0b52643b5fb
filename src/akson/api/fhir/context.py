"""What an interaction needs from the running server: the store, the registry and the settings."""

from __future__ import annotations

from dataclasses import dataclass

from akson.config import Settings
from akson.fhir.searchparams import SearchParamRegistry
from akson.store.repository import ResourceStore


@dataclass(frozen=True)
class FhirContext:
    store: ResourceStore
    registry: SearchParamRegistry
    settings: Settings
