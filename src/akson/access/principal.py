"""The authenticated caller of one request, as every layer above the store sees it.

A `Principal` is built from a verified token (`akson.access.tokens`) and never from anything the
client asserts unsigned. It is plain data: the policy (`akson.access.policy`) decides what it may
see. Personal data it carries (`national_id`) must never be logged; `log_name()` is what logs get.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from akson.access.scopes import Scope

Kind = Literal["practitioner", "citizen", "system"]

#: Purpose of use, urn:oid:2.16.840.1.113883.1.11.20448 (DOMAIN.md §3, tillitsrammeverk).
PURPOSES_OF_USE = ("TREAT", "ETREAT", "COC", "BTG")


@dataclass(frozen=True, slots=True)
class CareRelationship:
    """The `care_relationship` of a tillitsrammeverk attestation (nhn:tillitsrammeverk:parameters)."""

    purpose_of_use: str  # TREAT | ETREAT | COC | BTG
    healthcare_service: str | None = None  # e.g. Volven 8663 "KP02"
    purpose_of_use_details: str | None = None
    decision_ref_id: str | None = None
    decision_ref_description: str | None = None  # free text reason (self-declared / BTG)
    user_selected: bool = False  # decision_ref.user_selected: true = self-authorised
    patients: tuple[str, ...] = ()  # national ids the attestation names
    toa: int | None = None  # time of attestation, Unix seconds


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a practitioner (HelseID claims), a citizen (ID-porten) or a system client."""

    kind: Kind
    issuer: str
    subject: str  # the token's `sub`
    client_id: str
    scopes: tuple[Scope, ...] = ()
    national_id: str | None = None  # helseid://claims/identity/pid or ID-porten `pid`; never log
    name: str | None = None  # shown to citizens in their access log
    hpr_number: str | None = None  # helseid://claims/hpr/hpr_number
    orgnr_parent: str | None = None  # helseid://claims/client/claims/orgnr_parent (legal entity)
    orgnr_child: str | None = None  # helseid://claims/client/claims/orgnr_child (unit)
    security_level: str | None = None  # HelseID security_level ("4") or ID-porten acr
    care_relationship: CareRelationship | None = None
    launch_patient: str | None = None  # SMART launch context: Patient id
    token_id: str | None = None  # jti
    expires_at: int | None = None
    dpop_jkt: str | None = None  # cnf.jkt when the token is DPoP-bound
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def purpose_of_use(self) -> str | None:
        return self.care_relationship.purpose_of_use if self.care_relationship else None

    def log_name(self) -> str:
        """What a log line may say about this caller: kind and non-personal ids only."""
        if self.kind == "practitioner":
            return f"practitioner hpr={self.hpr_number or '?'} org={self.orgnr_child or '?'}"
        if self.kind == "citizen":
            return f"citizen sub={self.subject[:8]}…"
        return f"system client={self.client_id}"
