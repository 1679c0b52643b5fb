"""Parsing and checking of register records (one JSON Lines line each, docs/registers.md).

`parse_record` turns one line into a normalised record — only the documented fields, optional
lists present as lists, absent optionals as None — or raises `RecordError` with a reason that
names the field and the problem. Reasons never contain a national id (they may contain a
municipality number, an enum word or an organisation-free position), so they can be logged,
stored in a rejection table and printed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from datetime import date
from typing import Any

import orjson

from akson.fhir.identifiers import (
    PersonIdKind,
    classify_person_id,
    her_id_is_valid,
    hpr_is_valid,
    orgnr_is_valid,
)
from akson.registry.municipalities import municipality

__all__ = [
    "ADDRESS_PROTECTIONS",
    "AR_KINDS",
    "FAMILY_RELATIONS",
    "GENDERS",
    "ORGANIZATION_KINDS",
    "PARENTAL_RESPONSIBILITIES",
    "PERSON_STATUSES",
    "REGISTERS",
    "RecordError",
    "check_synthetic",
    "national_ids",
    "parse_record",
    "record_from",
]

REGISTERS = ("freg", "hpr", "enhet", "flr", "ar")
PERSON_STATUSES = ("bosatt", "utflyttet", "doed", "forsvunnet", "inaktiv", "ikkeBosatt")
GENDERS = ("male", "female", "other", "unknown")
ADDRESS_PROTECTIONS = ("unclassified", "client_address", "confidential", "strictly_confidential")
FAMILY_RELATIONS = ("mor", "far", "medmor", "barn", "ektefelle", "partner")
PARENTAL_RESPONSIBILITIES = ("felles", "mor", "far", "medmor", "andre", "ukjent")
ORGANIZATION_KINDS = ("kommune", "legekontor", "legevakt", "hjemmetjeneste", "helsestasjon",
                      "sykehjem", "helseforetak")
AR_KINDS = ("organization", "service", "person")

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_WORD = re.compile(r"[A-Za-z_]{1,30}")  # safe to echo: cannot be a national id
_CATEGORY = re.compile(r"[A-Z]{2}")  # Volven 9060 helsepersonellkategori (LE, SP, HP, …)
_CODE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_CONTRACT_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_POSTAL_CODE = re.compile(r"[0-9]{4}")
_RESH = re.compile(r"[1-9][0-9]{0,9}")
_MAX_TEXT = 200


class RecordError(ValueError):
    """A record that cannot be applied; `reason` is safe to log (no national id)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ------------------------------------------------------------------------------ field readers


class _Reader:
    """Reads typed fields of one JSON object; `path` prefixes the field names in reasons."""

    def __init__(self, obj: object, path: str = "") -> None:
        if not isinstance(obj, dict):
            raise RecordError(f"{path or 'the line'} is not a JSON object")
        self.obj: Mapping[str, Any] = obj
        self.path = path

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str, required: bool) -> Any:
        value = self.obj.get(key)
        if value is None and required:
            raise RecordError(f"{self.name(key)} is missing")
        return value

    def text(self, key: str, *, required: bool = True, pattern: re.Pattern[str] | None = None,
             shape: str = "") -> str | None:
        value = self.raw(key, required)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise RecordError(f"{self.name(key)} must be a non-empty string")
        if len(value) > _MAX_TEXT:
            raise RecordError(f"{self.name(key)} is longer than {_MAX_TEXT} characters")
        if pattern is not None and not pattern.fullmatch(value):
            raise RecordError(f"{self.name(key)} is not {shape}")
        return value

    def choice(self, key: str, allowed: tuple[str, ...], *, required: bool = True,
               default: str | None = None) -> str | None:
        value = self.raw(key, required)
        if value is None:
            return default
        if value not in allowed:
            shown = f" {value}" if isinstance(value, str) and _WORD.fullmatch(value) else ""
            raise RecordError(f"{self.name(key)}{shown} is not one of {', '.join(allowed)}")
        return str(value)

    def day(self, key: str, *, required: bool = False) -> str | None:
        value = self.raw(key, required)
        if value is None:
            return None
        if not isinstance(value, str) or not _DATE.fullmatch(value):
            raise RecordError(f"{self.name(key)} is not a date (YYYY-MM-DD)")
        try:
            date.fromisoformat(value)
        except ValueError:
            raise RecordError(f"{self.name(key)} is not a valid calendar date") from None
        return value

    def nin(self, key: str, *, required: bool = True) -> str | None:
        """A fødselsnummer or D-nummer (the only kinds FREG and HPR use)."""
        value = self.raw(key, required)
        if value is None:
            return None
        reason = _nin_problem(value)
        if reason:
            raise RecordError(f"{self.name(key)} {reason}")
        return str(value)

    def checked(self, key: str, is_valid: Callable[[str], bool], problem: str, *,
                required: bool = True) -> str | None:
        value = self.raw(key, required)
        if value is None:
            return None
        if not isinstance(value, str) or not is_valid(value):
            raise RecordError(f"{self.name(key)} {problem}")
        return value

    def municipality(self, key: str, *, required: bool = False) -> str | None:
        value = self.raw(key, required)
        if value is None:
            return None
        if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}", value):
            raise RecordError(f"{self.name(key)} is not a four-digit municipality number")
        if municipality(value) is None:
            raise RecordError(f"{self.name(key)} {value} is not a Norwegian municipality number")
        return value

    def items(self, key: str) -> Iterator[_Reader]:
        value = self.raw(key, False)
        if value is None:
            return
        if not isinstance(value, list):
            raise RecordError(f"{self.name(key)} must be a list")
        for i, item in enumerate(value):
            yield _Reader(item, f"{self.name(key)}[{i}]")

    def sub(self, key: str, *, required: bool) -> _Reader | None:
        value = self.raw(key, required)
        return None if value is None else _Reader(value, self.name(key))


def _nin_problem(value: object) -> str | None:
    """Why `value` is not a fødselsnummer / D-nummer (synthetic forms allowed), or None."""
    if not isinstance(value, str) or not (value.isascii() and value.isdigit()) or len(value) != 11:
        return "is not 11 digits"
    if value[0] in "89":
        return "is a felles hjelpenummer, not a fødselsnummer or D-nummer"
    person = classify_person_id(value)
    if person is None:
        day, month = int(value[0:2]) % 40, int(value[2:4]) % 40
        if not (1 <= day <= 31 and 1 <= month <= 12):
            return "does not start with a valid birth date"
        return "has an invalid check digit"
    if person.kind is PersonIdKind.HNR:
        return "has birth month + 40 (local H-nummer or NAV test number), not a national id"
    return None


def _period(r: _Reader, *, start_required: bool = False) -> tuple[str | None, str | None]:
    start, end = r.day("from", required=start_required), r.day("to")
    if start and end and end < start:
        raise RecordError(f"{r.name('to')} is before {r.name('from')}")
    return start, end


_HPR_PROBLEM = "is not an HPR number (1-9 digits, no leading zero)"
_ORGNR_PROBLEM = "is not an organisation number (9 digits, valid check digit)"
_HER_PROBLEM = "is not a HER-id (1-9 digits, no leading zero)"


# ------------------------------------------------------------------------------- registers


def _name(r: _Reader) -> dict[str, Any]:
    n = r.sub("name", required=True)
    assert n is not None
    out = {"given": n.text("given", required=False), "middle": n.text("middle", required=False),
           "family": n.text("family", required=False)}
    if not out["given"] and not out["family"]:
        raise RecordError(f"{n.path} needs a given or a family name")
    return out


def _freg(r: _Reader) -> dict[str, Any]:
    nin = r.nin("nin")
    rec: dict[str, Any] = {
        "nin": nin,
        "status": r.choice("status", PERSON_STATUSES),
        "birth_date": r.day("birth_date"),
        "gender": r.choice("gender", GENDERS, required=False),
        "name": _name(r),
        "address": None,
        "address_protection": r.choice("address_protection", ADDRESS_PROTECTIONS,
                                       required=False, default="unclassified"),
        "death_date": r.day("death_date"),
    }
    a = r.sub("address", required=False)
    if a is not None:
        raw_lines = a.raw("lines", False) or []
        if not isinstance(raw_lines, list):
            raise RecordError(f"{a.name('lines')} must be a list")
        lines = []
        for i, line in enumerate(raw_lines):
            if not isinstance(line, str) or not line.strip() or len(line) > _MAX_TEXT:
                raise RecordError(f"{a.name('lines')}[{i}] must be a non-empty string")
            lines.append(line)
        rec["address"] = {
            "lines": lines,
            "postal_code": a.text("postal_code", required=False, pattern=_POSTAL_CODE,
                                  shape="a four-digit postal code"),
            "city": a.text("city", required=False),
            "municipality": a.municipality("municipality"),
            "from": a.day("from"),
        }
    rec["family"] = [{"nin": f.nin("nin"), "relation": f.choice("relation", FAMILY_RELATIONS)}
                     for f in r.items("family")]
    rec["parental_responsibility"] = [
        {"child_nin": p.nin("child_nin"),
         "responsibility": p.choice("responsibility", PARENTAL_RESPONSIBILITIES)}
        for p in r.items("parental_responsibility")
    ]
    rec["guardianship"] = [{"guardian_nin": g.nin("guardian_nin")}
                           for g in r.items("guardianship")]
    if nin in national_ids(rec, related_only=True):
        raise RecordError("a relation refers to the person's own national id")
    return rec


def _hpr(r: _Reader) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "hpr_number": r.checked("hpr_number", hpr_is_valid, _HPR_PROBLEM),
        "nin": r.nin("nin", required=False),
        "name": _name(r),
        "authorizations": [],
        "specialities": [],
    }
    for a in r.items("authorizations"):
        start, end = _period(a)
        rec["authorizations"].append({
            "category": a.text("category", pattern=_CATEGORY,
                               shape="a Volven 9060 category (two capital letters)"),
            "from": start, "to": end})
    for s in r.items("specialities"):
        start, end = _period(s)
        rec["specialities"].append({
            "code": s.text("code", pattern=_CODE, shape="a code (letters, digits, . _ -)"),
            "display": s.text("display", required=False), "from": start, "to": end})
    return rec


def _enhet(r: _Reader) -> dict[str, Any]:
    rec = {
        "orgnr": r.checked("orgnr", orgnr_is_valid, _ORGNR_PROBLEM),
        "name": r.text("name"),
        "kind": r.choice("kind", ORGANIZATION_KINDS),
        "municipality": r.municipality("municipality"),
        "parent_orgnr": r.checked("parent_orgnr", orgnr_is_valid, _ORGNR_PROBLEM,
                                  required=False),
        "resh": r.text("resh", required=False, pattern=_RESH, shape="a RESH-id (digits)"),
    }
    if rec["parent_orgnr"] == rec["orgnr"]:
        raise RecordError("parent_orgnr is the unit's own orgnr")
    return rec


def _flr(r: _Reader) -> dict[str, Any]:
    kind = r.choice("kind", ("contract", "membership"))
    contract_id = r.text("contract_id", pattern=_CONTRACT_ID,
                         shape="a contract id (1-64 letters, digits, . _ : -)")
    start, end = _period(r, start_required=True)
    if kind == "membership":
        return {"kind": kind, "contract_id": contract_id, "nin": r.nin("nin"),
                "from": start, "to": end}
    max_patients = r.raw("max_patients", False)
    if max_patients is not None and (
        isinstance(max_patients, bool) or not isinstance(max_patients, int)
        or not 0 <= max_patients <= 100_000
    ):
        raise RecordError("max_patients is not a whole number from 0 to 100000")
    return {
        "kind": kind, "contract_id": contract_id,
        "hpr_number": r.checked("hpr_number", hpr_is_valid, _HPR_PROBLEM),
        "orgnr": r.checked("orgnr", orgnr_is_valid, _ORGNR_PROBLEM),
        "municipality": r.municipality("municipality"),
        "from": start, "to": end, "max_patients": max_patients,
    }


def _ar(r: _Reader) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "her_id": r.checked("her_id", her_id_is_valid, _HER_PROBLEM),
        "kind": r.choice("kind", AR_KINDS),
        "name": r.text("name"),
    }
    if rec["kind"] == "organization":
        rec["orgnr"] = r.checked("orgnr", orgnr_is_valid, _ORGNR_PROBLEM, required=False)
        return rec
    rec["parent_her_id"] = r.checked("parent_her_id", her_id_is_valid, _HER_PROBLEM)
    if rec["parent_her_id"] == rec["her_id"]:
        raise RecordError("parent_her_id is the party's own HER-id")
    if rec["kind"] == "person":
        rec["hpr_number"] = r.checked("hpr_number", hpr_is_valid, _HPR_PROBLEM)
        return rec
    s = r.sub("service", required=True)
    assert s is not None
    rec["service"] = {
        "code": s.text("code", pattern=_CODE, shape="a code (letters, digits, . _ -)"),
        "display": s.text("display", required=False),
        "system": s.text("system", required=False, pattern=re.compile(r"(urn|https?):\S+"),
                         shape="a URI"),
    }
    return rec


_PARSERS: dict[str, Callable[[_Reader], dict[str, Any]]] = {
    "freg": _freg, "hpr": _hpr, "enhet": _enhet, "flr": _flr, "ar": _ar,
}


def record_from(register: str, obj: object) -> dict[str, Any]:
    """Check an already-parsed JSON value as a `register` record; the normalised record."""
    parser = _PARSERS.get(register)
    if parser is None:
        raise RecordError(f"unknown register (one of {', '.join(REGISTERS)})")
    return parser(_Reader(obj))


def parse_record(register: str, line: bytes) -> dict[str, Any]:
    """Parse one JSON Lines line of `register` (freg, hpr, enhet, flr, ar) into a normalised
    record; raise RecordError with a reason (no national id in it) when it is not acceptable.

    Synthetic numbers (Tenor month + 80) pass here; whether they are allowed is the
    environment's decision — see `check_synthetic`.
    """
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        # orjson's message names a position, never the content.
        raise RecordError(f"the line is not valid JSON ({exc.msg} at char {exc.pos})") from None
    return record_from(register, obj)


def national_ids(record: Mapping[str, Any], *, related_only: bool = False) -> list[str]:
    """Every national id in a normalised record (the person's own first unless related_only)."""
    out = [] if related_only or not record.get("nin") else [record["nin"]]
    out += [f["nin"] for f in record.get("family") or []]
    out += [p["child_nin"] for p in record.get("parental_responsibility") or []]
    out += [g["guardian_nin"] for g in record.get("guardianship") or []]
    return out


def check_synthetic(record: Mapping[str, Any], *, allow_synthetic_ids: bool) -> None:
    """Raise RecordError if the record holds a synthetic national id where none is allowed
    (production: AKSON_ENVIRONMENT=production)."""
    if allow_synthetic_ids:
        return
    for nin in national_ids(record):
        person = classify_person_id(nin)
        if person is not None and person.synthetic:
            raise RecordError("a national id is a synthetic test number, not accepted here")
