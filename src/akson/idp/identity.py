"""Who logged in at the provider, and what they attested: the input to every token's claims."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Workplace:
    """Where a practitioner works: the legal entity (parent orgnr) and unit (child orgnr)."""

    parent_orgnr: str
    parent_name: str
    unit_orgnr: str
    unit_name: str

    @property
    def key(self) -> str:
        return f"{self.parent_orgnr}:{self.unit_orgnr}"


@dataclass(frozen=True)
class Identity:
    """A person logged in through the login page. `pid` is a national id: never log it."""

    kind: Literal["practitioner", "citizen"]
    pid: str
    name: str
    fhir_user: str  # "Practitioner/<id>" or "Patient/<id>"
    hpr_number: str | None = None
    authorization: str | None = None  # Volven 9060 category, e.g. "LE"
    workplace: Workplace | None = None
    #: The tillitsrammeverk attestation (`nhn:tillitsrammeverk:parameters` element), if any.
    attestation: dict[str, Any] | None = None
    launch_patient: str | None = None  # Patient id for SMART launch/patient
    extra: dict[str, str] = field(default_factory=dict)

    def log_name(self) -> str:
        """What a log line may say: kind and non-personal ids only."""
        if self.kind == "practitioner":
            unit = self.workplace.unit_orgnr if self.workplace else "?"
            return f"practitioner hpr={self.hpr_number} org={unit}"
        return "citizen"
