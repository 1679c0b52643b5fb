"""Citizens' rights over their results (DOMAIN.md §5, Pasientens prøvesvar):

- Reservation against storage: a Consent (category `consent-category|reservasjon-provesvar`,
  provision deny) in the citizen's record, written only by the citizen or a system client acting
  for them (akson.access.gate). Making it purges every stored result of theirs — the only hard
  delete in Akson, audited; the inbox keeps bytes only of deliveries still waiting — and later
  deliveries are answered but not stored. Withdrawing it makes later deliveries stored again.
- Blocking named personnel: the journal's block (Consent `sperring`, akson.access.policy) covers
  results too, since results live in the same record behind the same gate.
- Delayed release: akson.results.release.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from akson.access.gate import GuardedSession
from akson.fhir import search as fhir_search
from akson.results import model
from akson.store import results_inbox as inbox
from akson.store.access_sql import CONSENT_CATEGORY_SYSTEM, RESERVATION_CODE


def reservation_id(patient_id: str) -> str:
    """One reservation Consent per patient, so making it twice changes nothing."""
    return model.resource_id("reservation", patient_id)


def reservation_consent(patient_id: str, *, active: bool, now: datetime) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "status": "active" if active else "inactive",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": CONSENT_CATEGORY_SYSTEM, "code": RESERVATION_CODE,
                                  "display": "Reservasjon mot lagring av prøvesvar"}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "dateTime": now.astimezone(UTC).isoformat(timespec="seconds"),
        "policyRule": {"text": "Reservasjon mot lagring i Pasientens prøvesvar"},
        "provision": {"type": "deny" if active else "permit"},
    }


async def has_reservation(g: GuardedSession, patient_id: str) -> bool:
    """Has the patient an active reservation against storage of results?"""
    query = fhir_search.parse("Consent", [
        ("patient", f"Patient/{patient_id}"),
        ("category", f"{CONSENT_CATEGORY_SYSTEM}|{RESERVATION_CODE}"),
        ("status", "active"), ("_count", "1"), ("_elements", "id")], registry=g.registry)
    # The service's own check, whoever delivers: not a read on the caller's behalf.
    page = await g.bookkeeping.search(query)
    return bool(page.items)


async def reserve(g: GuardedSession, patient_id: str, now: datetime) -> int:
    """Record the reservation and purge the patient's stored results; returns how many
    resources were purged. The gate checks that the caller is the citizen themself (or a
    system client acting for Helsenorge) for both steps."""
    # The same lock a delivery for this patient holds: none is half-way while results go.
    await inbox.lock(g.bookkeeping, f"patient:{patient_id}")
    await g.update("Consent", reservation_id(patient_id),
                   reservation_consent(patient_id, active=True, now=now))
    return await g.purge_tagged(patient_id, model.RESULT_TYPES,
                                (model.ORIGIN_SYSTEM, model.ORIGIN_RESULTS))


async def withdraw(g: GuardedSession, patient_id: str, now: datetime) -> None:
    """End the reservation: results delivered from now on are stored again."""
    await inbox.lock(g.bookkeeping, f"patient:{patient_id}")
    await g.update("Consent", reservation_id(patient_id),
                   reservation_consent(patient_id, active=False, now=now))
