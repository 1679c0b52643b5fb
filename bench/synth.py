"""Synthetic Norwegian Patients (Tenor-style fødselsnummer) and vital-sign Observations."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import Any

from names import FEMALE_GIVEN, MALE_GIVEN, PLACES, STREETS, SURNAMES

FNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"
K1_WEIGHTS = (3, 7, 6, 1, 8, 9, 4, 5, 2)
K2_WEIGHTS = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
_EPOCH = dt.date(1930, 1, 1)
_SPAN_DAYS = (dt.date(2023, 12, 31) - _EPOCH).days


def _check_digit(digits: list[int], weights: tuple[int, ...]) -> int | None:
    k = 11 - sum(d * w for d, w in zip(digits, weights, strict=True)) % 11
    if k == 11:
        return 0
    return None if k == 10 else k


def check_digits(first9: str) -> str | None:
    """Return K1K2 for nine digits, or None if the individnummer gives an invalid number."""
    digits = [int(c) for c in first9]
    k1 = _check_digit(digits, K1_WEIGHTS)
    if k1 is None:
        return None
    k2 = _check_digit([*digits, k1], K2_WEIGHTS)
    return None if k2 is None else f"{k1}{k2}"


def is_valid_fnr(fnr: str) -> bool:
    """Mod-11 check of both control digits (any date offset accepted)."""
    return len(fnr) == 11 and fnr.isdigit() and check_digits(fnr[:9]) == fnr[9:]


def _individnummer_range(year: int, rng: random.Random) -> tuple[int, int]:
    if year >= 2000:
        return 500, 999
    if year >= 1940:
        return (0, 499) if rng.random() < 0.8 else (900, 999)
    return 0, 499


def tenor_fnr(birth: dt.date, female: bool, rng: random.Random | None = None) -> str:
    """A synthetic (Tenor) fødselsnummer: month + 80, sex in digit 9, valid K1/K2."""
    rng = rng or random.Random()
    lo, hi = _individnummer_range(birth.year, rng)
    prefix = f"{birth.day:02d}{birth.month + 80:02d}{birth.year % 100:02d}"
    while True:
        ind = rng.randint(lo, hi)
        if (ind % 2 == 0) != female:
            ind = ind + 1 if ind < hi else ind - 1
        first9 = f"{prefix}{ind:03d}"
        kk = check_digits(first9)
        if kk is not None:
            return first9 + kk


class PatientFactory:
    """Generates unique synthetic Patients; remembers fnr and family of each."""

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.used_fnr: set[str] = set()

    def patient(self) -> dict[str, Any]:
        rng = self.rng
        female = rng.random() < 0.5
        while True:
            birth = _EPOCH + dt.timedelta(days=rng.randrange(_SPAN_DAYS))
            fnr = tenor_fnr(birth, female, rng)
            if fnr not in self.used_fnr:
                self.used_fnr.add(fnr)
                break
        given = [rng.choice(FEMALE_GIVEN if female else MALE_GIVEN)]
        if rng.random() < 0.3:
            given.append(rng.choice(FEMALE_GIVEN if female else MALE_GIVEN))
        postal, city = rng.choice(PLACES)
        return {
            "resourceType": "Patient",
            "active": True,
            "identifier": [{"use": "official", "system": FNR_SYSTEM, "value": fnr}],
            "name": [{"use": "official", "family": rng.choice(SURNAMES), "given": given}],
            "gender": "female" if female else "male",
            "birthDate": birth.isoformat(),
            "address": [
                {
                    "use": "home",
                    "type": "physical",
                    "line": [f"{rng.choice(STREETS)} {rng.randint(1, 120)}"],
                    "postalCode": postal,
                    "city": city,
                    "country": "NO",
                }
            ],
        }

    def heart_rate(self, subject_ref: str) -> dict[str, Any]:
        rng = self.rng
        when = dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))) + dt.timedelta(
            minutes=rng.randrange(365 * 24 * 60)
        )
        bpm = rng.randint(45, 130)
        return {
            "resourceType": "Observation",
            "status": "final",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "vital-signs",
                            "display": "Vital Signs",
                        }
                    ]
                }
            ],
            "code": {
                "coding": [
                    {"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}
                ],
                "text": "Puls",
            },
            "subject": {"reference": subject_ref},
            "effectiveDateTime": when.isoformat(),
            "valueQuantity": {
                "value": bpm,
                "unit": "beats/minute",
                "system": "http://unitsofmeasure.org",
                "code": "/min",
            },
        }

    def transaction(self, patients: int) -> dict[str, Any]:
        """A transaction Bundle: `patients` Patients plus one heart rate per Patient (urn:uuid)."""
        entries: list[dict[str, Any]] = []
        observations: list[dict[str, Any]] = []
        for _ in range(patients):
            full_url = f"urn:uuid:{uuid.UUID(int=self.rng.getrandbits(128), version=4)}"
            entries.append(
                {
                    "fullUrl": full_url,
                    "resource": self.patient(),
                    "request": {"method": "POST", "url": "Patient"},
                }
            )
            obs_url = f"urn:uuid:{uuid.UUID(int=self.rng.getrandbits(128), version=4)}"
            observations.append(
                {
                    "fullUrl": obs_url,
                    "resource": self.heart_rate(full_url),
                    "request": {"method": "POST", "url": "Observation"},
                }
            )
        return {"resourceType": "Bundle", "type": "transaction", "entry": entries + observations}
