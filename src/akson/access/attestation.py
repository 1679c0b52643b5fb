"""The tillitsrammeverk attestation: a practitioner's attested grounds for access (DOMAIN.md §3).

The attestation is an element of type `nhn:tillitsrammeverk:parameters` in `authorization_details`
(RFC 9396), which HelseID forwards as a claim of the access token. Its structure (NHN
Tillitsrammeverk, "Informasjons- og datamodell", attestation spec v1.1): `practitioner.identifier`
(the attesting person's national id), `care_relationship` {`healthcare_service`,
`purpose_of_use` (urn:oid:2.16.840.1.113883.1.11.20448), `purpose_of_use_details`,
`decision_ref` {`id`, `description`, `user_selected`}}, `patients[]` {`identifier`, …} and `toa`
(Unix seconds). Member names are accepted with `_` (v1.1, HelseID) or `-` (earlier drafts); coded
values as `{"code", "system"}` objects or bare code strings; identifiers as `{"id"}` or
`{"value"}`.

The business rules enforced here: the attested practitioner must be the authenticated person
(`attestation_mismatch`), `toa` must be at most 60 minutes old (`attestation_has_expired`), and
the purpose of use must be one of TREAT, ETREAT, COC, BTG (`attestation_invalid`).
"""

from __future__ import annotations

import json
import math
from typing import Any

from akson.access.principal import PURPOSES_OF_USE, CareRelationship
from akson.access.token_error import TokenError

ATTESTATION_TYPE = "nhn:tillitsrammeverk:parameters"
PURPOSE_OF_USE_SYSTEM = "urn:oid:2.16.840.1.113883.1.11.20448"
#: Tillitsrammeverk business rule: an attestation older than this is refused.
MAX_ATTESTATION_AGE_SECONDS = 60 * 60
#: How far `toa` may lie in the future (clock skew between the EPJ and Akson).
TOA_LEEWAY_SECONDS = 60
_MAX_TEXT = 1024


def _member(obj: dict[str, Any], name: str) -> Any:
    """`obj[name]`, also under the hyphenated spelling of earlier spec drafts."""
    if name in obj:
        return obj[name]
    return obj.get(name.replace("_", "-"))


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > _MAX_TEXT:
        raise TokenError("attestation_invalid")
    return value


def _code(value: Any) -> tuple[str | None, str | None]:
    """A coded value → (code, system); a bare string is a code without system."""
    if value is None:
        return None, None
    if isinstance(value, str):
        return _text(value), None
    if not isinstance(value, dict):
        raise TokenError("attestation_invalid")
    return _text(value.get("code")), _text(value.get("system"))


def _identifier(value: Any) -> str | None:
    """An identifier object (`id` or `value`) or bare string → the identifier string."""
    if value is None or isinstance(value, str):
        return _text(value)
    if not isinstance(value, dict):
        raise TokenError("attestation_invalid")
    return _text(value.get("id", value.get("value")))


def find_attestation(authorization_details: Any) -> dict[str, Any] | None:
    """The one `nhn:tillitsrammeverk:parameters` element of `authorization_details`, or None.

    Other types (e.g. `helseid_authorization`) are ignored; two attestations are ambiguous and
    refused.
    """
    if authorization_details is None:
        return None
    if isinstance(authorization_details, str):
        # Some issuers serialise structured claims as JSON text.
        try:
            authorization_details = json.loads(authorization_details)
        except ValueError:
            raise TokenError("attestation_invalid") from None
    if isinstance(authorization_details, dict):
        authorization_details = [authorization_details]
    if not isinstance(authorization_details, list):
        raise TokenError("attestation_invalid")
    found = [d for d in authorization_details if isinstance(d, dict) and d.get("type") == ATTESTATION_TYPE]
    if len(found) > 1:
        raise TokenError("attestation_invalid")
    return found[0] if found else None


def parse_attestation(element: dict[str, Any], *, authenticated_pid: str | None,
                      now: float) -> CareRelationship:
    """Check one attestation element against the rules and return its `CareRelationship`.

    `authenticated_pid` is the national id the token authenticates (HelseID `pid`); the attested
    `practitioner.identifier` must equal it.
    """
    practitioner = element.get("practitioner")
    if not isinstance(practitioner, dict):
        raise TokenError("attestation_invalid")
    attested = _identifier(practitioner.get("identifier"))
    if attested is None or authenticated_pid is None or attested != authenticated_pid:
        raise TokenError("attestation_mismatch")

    toa = element.get("toa")
    if not isinstance(toa, int | float) or isinstance(toa, bool) or not math.isfinite(toa):
        raise TokenError("attestation_invalid")
    if toa > now + TOA_LEEWAY_SECONDS:
        raise TokenError("attestation_invalid")
    if now - toa > MAX_ATTESTATION_AGE_SECONDS:
        raise TokenError("attestation_has_expired")

    care = _member(element, "care_relationship")
    if not isinstance(care, dict):
        raise TokenError("attestation_invalid")
    purpose, system = _code(_member(care, "purpose_of_use"))
    if purpose not in PURPOSES_OF_USE:
        raise TokenError("attestation_invalid")
    oid = PURPOSE_OF_USE_SYSTEM.removeprefix("urn:oid:")
    if system is not None and system.removeprefix("urn:oid:") != oid:
        raise TokenError("attestation_invalid")
    service, _ = _code(_member(care, "healthcare_service"))
    details, _ = _code(_member(care, "purpose_of_use_details"))

    decision = _member(care, "decision_ref")
    if decision is not None and not isinstance(decision, dict):
        raise TokenError("attestation_invalid")
    decision = decision or {}
    decision_id = decision.get("id")
    if decision_id is not None and not isinstance(decision_id, str):
        raise TokenError("attestation_invalid")
    user_selected = _member(decision, "user_selected")
    if user_selected is not None and not isinstance(user_selected, bool):
        raise TokenError("attestation_invalid")

    patients = element.get("patients", [])
    if not isinstance(patients, list):
        raise TokenError("attestation_invalid")
    patient_ids: list[str] = []
    for patient in patients:
        if not isinstance(patient, dict):
            raise TokenError("attestation_invalid")
        pid = _identifier(patient.get("identifier"))
        if pid:
            patient_ids.append(pid)

    return CareRelationship(
        purpose_of_use=purpose,
        healthcare_service=service,
        purpose_of_use_details=details,
        decision_ref_id=_text(decision_id),
        decision_ref_description=_text(decision.get("description")),
        user_selected=bool(user_selected),
        patients=tuple(patient_ids),
        toa=int(toa),
    )


def attestation_name(element: dict[str, Any]) -> str | None:
    """The attested practitioner's name (shown to citizens in their access log), if given."""
    practitioner = element.get("practitioner")
    identifier = practitioner.get("identifier") if isinstance(practitioner, dict) else None
    name = identifier.get("name") if isinstance(identifier, dict) else None
    return name if isinstance(name, str) and len(name) <= _MAX_TEXT else None
