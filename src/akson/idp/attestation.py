"""The tillitsrammeverk attestation a practitioner makes at login, as `authorization_details`.

One element of `type` `nhn:tillitsrammeverk:parameters` (RFC 9396 authorization details; NHN
attestation spec v1.1, DOMAIN.md §3), with underscore member names as HelseID forwards them:

    {"type": "nhn:tillitsrammeverk:parameters",
     "practitioner": {"identifier": {id, name, system}, "hpr_nr": {id, system},
                      "authorization": {code, system}, "legal_entity": {id, name, system},
                      "point_of_care": {id, name, system}},
     "care_relationship": {"purpose_of_use": {code, text, system},
                           "decision_ref": {id, user_selected, description?}},
     "patients": [{"identifier": {id, system}}],            # the launch patient, if any
     "toa": <Unix seconds>}

`decision_ref.user_selected` is true when the user declared the care relationship themself
(self-declared, and always for BTG), with the required reason in `description`.
"""

from __future__ import annotations

import uuid
from typing import Any

from akson.fhir.naming import FNR_SYSTEM, HELSEPERSONELLKATEGORI_SYSTEM, HPR_SYSTEM, ORGNR_SYSTEM
from akson.idp.identity import Workplace
from akson.registry.mapping import person_id_system

TYPE = "nhn:tillitsrammeverk:parameters"
PURPOSE_SYSTEM = "urn:oid:2.16.840.1.113883.1.11.20448"
#: Purpose of use codes (HL7 v3 PurposeOfUse) with their Norwegian labels.
PURPOSES = {
    "TREAT": "Behandling",
    "ETREAT": "Akuttbehandling",
    "COC": "Koordinering av helsehjelp",
    "BTG": "Nødtilgang (bryte glasset)",
}
MAX_REASON = 500


def _system(nin: str) -> str:
    try:
        return person_id_system(nin)
    except ValueError:
        return FNR_SYSTEM


def build(*, pid: str, name: str, hpr_number: str, authorization: str | None,
          workplace: Workplace, purpose: str, reason: str | None, self_declared: bool,
          patient_nin: str | None, toa: int) -> dict[str, Any]:
    """The attestation element; `purpose` must be one of PURPOSES (checked by the caller)."""
    practitioner: dict[str, Any] = {
        "identifier": {"id": pid, "name": name, "system": _system(pid)},
        "hpr_nr": {"id": hpr_number, "system": HPR_SYSTEM},
        "legal_entity": {"id": workplace.parent_orgnr, "name": workplace.parent_name,
                         "system": ORGNR_SYSTEM},
        "point_of_care": {"id": workplace.unit_orgnr, "name": workplace.unit_name,
                          "system": ORGNR_SYSTEM},
    }
    if authorization:
        practitioner["authorization"] = {"code": authorization,
                                         "system": HELSEPERSONELLKATEGORI_SYSTEM}
    decision: dict[str, Any] = {"id": str(uuid.uuid4()),
                                "user_selected": self_declared or purpose == "BTG"}
    if reason:
        decision["description"] = reason
    return {
        "type": TYPE,
        "practitioner": practitioner,
        "care_relationship": {
            "purpose_of_use": {"code": purpose, "text": PURPOSES[purpose],
                               "system": PURPOSE_SYSTEM},
            "decision_ref": decision,
        },
        "patients": [{"identifier": {"id": patient_nin, "system": _system(patient_nin)}}]
        if patient_nin else [],
        "toa": toa,
    }
