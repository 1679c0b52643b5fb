"""The authenticated caller of one request, as every layer above the store sees it.

A `Principal` is built from a verified token (`akson.access.tokens`) and never from anything the
client asserts unsigned. It is plain data: the policy (`akson.access.policy`) decides what it may
see. Personal data it carries (`national_id`) must never be logged; `log_name()` is what logs get.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from akson.access.scopes import Scope, parse_scope, scope_text

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


def to_json(principal: Principal) -> dict[str, object]:
    """The principal as plain JSON, to act for it later (an export job runs after its kick-off
    returned). The national id is left out: only a citizen's facts need it, and citizens do not
    export; an attestation's named patients stay (break-the-glass needs them)."""
    out: dict[str, object] = {
        "kind": principal.kind, "issuer": principal.issuer, "subject": principal.subject,
        "client_id": principal.client_id, "scopes": [scope_text(s) for s in principal.scopes],
        "name": principal.name, "hpr_number": principal.hpr_number,
        "orgnr_parent": principal.orgnr_parent, "orgnr_child": principal.orgnr_child,
        "launch_patient": principal.launch_patient,
    }
    cr = principal.care_relationship
    if cr is not None:
        out["care_relationship"] = {
            "purpose_of_use": cr.purpose_of_use, "healthcare_service": cr.healthcare_service,
            "purpose_of_use_details": cr.purpose_of_use_details,
            "decision_ref_id": cr.decision_ref_id,
            "decision_ref_description": cr.decision_ref_description,
            "user_selected": cr.user_selected, "patients": list(cr.patients), "toa": cr.toa}
    return out


def from_json(data: object) -> Principal | None:
    """`to_json`'s inverse; None for anything that is not such a document."""
    if not isinstance(data, dict) or data.get("kind") not in ("practitioner", "citizen", "system"):
        return None
    cr_data = data.get("care_relationship")
    care = None
    if isinstance(cr_data, dict):
        care = CareRelationship(
            purpose_of_use=str(cr_data.get("purpose_of_use") or ""),
            healthcare_service=cr_data.get("healthcare_service"),
            purpose_of_use_details=cr_data.get("purpose_of_use_details"),
            decision_ref_id=cr_data.get("decision_ref_id"),
            decision_ref_description=cr_data.get("decision_ref_description"),
            user_selected=bool(cr_data.get("user_selected")),
            patients=tuple(str(p) for p in cr_data.get("patients") or ()),
            toa=cr_data.get("toa"))
    scopes = tuple(s for s in (parse_scope(str(t)) for t in data.get("scopes") or ()) if s)
    return Principal(kind=data["kind"], issuer=str(data.get("issuer") or ""),
                     subject=str(data.get("subject") or ""),
                     client_id=str(data.get("client_id") or ""), scopes=scopes,
                     name=data.get("name"), hpr_number=data.get("hpr_number"),
                     orgnr_parent=data.get("orgnr_parent"), orgnr_child=data.get("orgnr_child"),
                     care_relationship=care, launch_patient=data.get("launch_patient"))
