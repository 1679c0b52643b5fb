"""KITH data types (TS, PQ, CV/CS) to FHIR R4 values: dates in Oslo time, quantities, codings.

KITH datatypes: kith.xsd (TS = xs:dateTime|date|gYear|gYearMonth|time in `V`; PQ = `V` + `U`;
CV = `V` code, `S` OID, `DN` display, `OT` original text). FHIR: https://hl7.org/fhir/R4/datatypes.html.
Pure functions; a value that cannot be read gives None (the caller decides whether to warn or
reject).
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final
from xml.etree.ElementTree import Element
from zoneinfo import ZoneInfo

from akson.fhir import ucum
from akson.results.model import NCRP_SYSTEM, NLK_SYSTEM, NORPAT_SYSTEM, UCUM_SYSTEM

OSLO: Final = ZoneInfo("Europe/Oslo")

_DATE_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?"
)
_PARTIAL_DATE = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?")

#: OIDs (the `S` attribute) with a system URI of their own; any other OID becomes `urn:oid:<S>`.
CODE_SYSTEMS: Final = {
    "2.16.578.1.12.4.1.1.7280": NLK_SYSTEM,
    "2.16.578.1.12.4.1.1.7270": NCRP_SYSTEM,
    "2.16.578.1.12.4.1.1.7010": NORPAT_SYSTEM,
}
_OID = re.compile(r"\d+(\.\d+)*")

#: KITH `ArithmeticComp` (Volven 8239) → FHIR Quantity.comparator.
COMPARATORS: Final = {"LT": "<", "LE": "<=", "GT": ">", "GE": ">="}
_VALUE = re.compile(r"\s*(<=|>=|<|>|≤|≥)?\s*([+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+))\s*")
_SYMBOLS: Final = {"≤": "<=", "≥": ">="}

#: KITH `DevResultInd` (Volven 8244: 1 over, 2 under the reference limit; some labs send the
#: HL7 flags themselves) → HL7 v3 ObservationInterpretation.
INTERPRETATION_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
INTERPRETATIONS: Final = {
    "1": ("H", "High"), "2": ("L", "Low"), "3": ("A", "Abnormal"),
    "H": ("H", "High"), "L": ("L", "Low"), "A": ("A", "Abnormal"), "HH": ("HH", "Critical high"),
    "LL": ("LL", "Critical low"), "AA": ("AA", "Critical abnormal"), "N": ("N", "Normal"),
}

#: Unit spellings seen in deliveries that are not UCUM, and their UCUM form.
_UNIT_FIXES: Final = {"µ": "u", "μ": "u", "10E": "10*", "10#": "10*", "10^": "10*"}


def attr(el: Element | None, name: str = "V") -> str | None:
    """An attribute of `el`, stripped; None when the element or a non-blank value is absent."""
    if el is None:
        return None
    value = el.get(name)
    return value.strip() if value and value.strip() else None


def text(el: Element | None) -> str | None:
    """All text under `el` (also mixed content such as XHTML, whose paragraphs and line breaks
    become line breaks), whitespace-trimmed; None if blank."""
    if el is None:
        return None
    parts: list[str] = []
    _collect(el, parts)
    joined = re.sub(r"[ \t]*\n[ \t\n]*\n", "\n\n", "".join(parts)).strip()
    return joined or None


def _collect(el: Element, parts: list[str]) -> None:
    parts.append(el.text or "")
    for child in el:
        name = child.tag.rsplit("}", 1)[-1] if isinstance(child.tag, str) else ""
        block = name in _BLOCKS
        if block and name != "br":
            parts.append("\n")
        _collect(child, parts)
        if block:
            parts.append("\n")
        parts.append(child.tail or "")


_BLOCKS: Final = frozenset({"p", "br", "div", "li", "tr", "h1", "h2", "h3", "h4", "table", "ul"})


def date_time(value: str | None) -> str | None:
    """A KITH TS value as a FHIR dateTime: zone-less times are Norwegian local time and get the
    Europe/Oslo offset of that instant (`2020-03-17T10:15:00+01:00`); dates stay dates; fractions
    are kept to microseconds. None when unreadable (or a bare time, which FHIR cannot hold)."""
    if value is None:
        return None
    value = value.strip()
    if _PARTIAL_DATE.fullmatch(value):
        return value if _real_date(value) else None
    m = _DATE_TIME.fullmatch(value)
    if m is None:
        return None
    year, month, day, hour, minute = (int(g) for g in m.groups()[:5])
    second = int(m.group(6) or 0)
    fraction = (m.group(7) or "")[:7]  # "." + at most six digits
    try:
        local = datetime(year, month, day, hour, minute, second, tzinfo=OSLO)
    except ValueError:
        return None
    zone = m.group(8)
    if zone is None:
        offset = local.strftime("%z")
        zone = f"{offset[:3]}:{offset[3:]}"
    return f"{local.strftime('%Y-%m-%dT%H:%M:%S')}{fraction}{zone}"


def instant(value: str | None) -> str | None:
    """Like `date_time`, but a bare date becomes midnight Oslo time (FHIR `instant` needs a time)."""
    out = date_time(value)
    if out is not None and "T" not in out:
        return date_time(f"{out}T00:00:00") if len(out) == 10 else None
    return out


def _real_date(value: str) -> bool:
    parts = [int(p) for p in value.split("-")]
    try:
        datetime(parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1)
    except ValueError:
        return False
    return True


def system_for(oid: str | None) -> str | None:
    """The FHIR system of a KITH `S` OID (NLK, NCRP, NORPAT by name; others as `urn:oid:`)."""
    if oid is None:
        return None
    if oid in CODE_SYSTEMS:
        return CODE_SYSTEMS[oid]
    return f"urn:oid:{oid}" if _OID.fullmatch(oid) else None


def coding(el: Element | None) -> dict[str, Any] | None:
    """A CV/CS element as a FHIR Coding (None without a code)."""
    code = attr(el, "V")
    if code is None:
        return None
    out: dict[str, Any] = {}
    system = system_for(attr(el, "S"))
    if system:
        out["system"] = system
    out["code"] = code
    display = attr(el, "DN") or attr(el, "OT")
    if display:
        out["display"] = display
    return out


def concept(elements: list[Element], fallback_text: str | None = None) -> dict[str, Any] | None:
    """CV/CS elements (the same concept in several code systems) as one CodeableConcept."""
    codings = [c for c in (coding(el) for el in elements) if c]
    label = next((t for el in elements for t in (attr(el, "OT"), attr(el, "DN")) if t), None)
    label = fallback_text or label
    if not codings and not label:
        return None
    out: dict[str, Any] = {}
    if codings:
        out["coding"] = codings
    if label:
        out["text"] = label
    return out


def number(value: str) -> tuple[str | None, Decimal] | None:
    """`"5,6"`, `"<5"`, `"> 10.0"` → (comparator or None, Decimal); None when not a number."""
    m = _VALUE.fullmatch(value)
    if m is None:
        return None
    comparator = m.group(1)
    try:
        parsed = Decimal(m.group(2).replace(",", "."))
    except InvalidOperation:
        return None
    return (_SYMBOLS.get(comparator, comparator) if comparator else None), parsed


def json_number(value: Decimal) -> int | float:
    """A Decimal as a JSON number (int when whole, so "140" stays 140)."""
    return int(value) if value == value.to_integral_value() and abs(value) < 2**53 else float(value)


def quantity(value: Decimal, unit: str | None, comparator: str | None = None) -> dict[str, Any]:
    """A FHIR Quantity; the unit gets the UCUM system and code when it reads as UCUM."""
    out: dict[str, Any] = {"value": json_number(value)}
    if comparator:
        out["comparator"] = comparator
    if unit:
        out["unit"] = unit
        code = ucum_code(unit)
        if code is not None:
            out["system"] = UCUM_SYSTEM
            out["code"] = code
    return out


def ucum_code(unit: str) -> str | None:
    """The UCUM code for a lab's unit text (`10E9/L` → `10*9/L`, `µmol/L` → `umol/L`,
    `IU/L` → `[IU]/L`), or None when it is not UCUM (e.g. `mg/L FEU`)."""
    code = unit.strip()
    if not code or code in ("0", "1"):
        return None
    for wrong, right in _UNIT_FIXES.items():
        code = code.replace(wrong, right)
    code = re.sub(r"(?<!\[)IU(?!\])", "[IU]", code)
    code = re.sub(r"/1\.73m2$", "/{1.73_m2}", code)
    return code if ucum.parse(code) is not None else None


def interpretation(el: Element | None) -> dict[str, Any] | None:
    """`DevResultInd` as an Observation.interpretation CodeableConcept (None if unknown)."""
    code = attr(el, "V")
    if code is None or code.upper() not in INTERPRETATIONS:
        return None
    v3, display = INTERPRETATIONS[code.upper()]
    out: dict[str, Any] = {
        "coding": [{"system": INTERPRETATION_SYSTEM, "code": v3, "display": display}]
    }
    if attr(el, "DN"):
        out["text"] = attr(el, "DN")
    return out


def reference_range(descr: str, unit: str | None) -> dict[str, Any]:
    """A `RefInterval/Descr` text as a referenceRange: `137 - 144`, `3,5 - 11,0`, `<35`, `>60`
    give low/high (in the result's unit); the text is always kept."""
    out: dict[str, Any] = {}
    parts = re.fullmatch(r"\s*([^-–]+?)\s*[-–]\s*([^-–]+?)\s*", descr)
    if parts:
        low, high = number(parts.group(1)), number(parts.group(2))
        if low and high and low[0] is None and high[0] is None:
            out["low"] = _simple(quantity(low[1], unit))
            out["high"] = _simple(quantity(high[1], unit))
    else:
        single = number(descr)
        if single and single[0] in ("<", "<="):
            out["high"] = _simple(quantity(single[1], unit))
        elif single and single[0] in (">", ">="):
            out["low"] = _simple(quantity(single[1], unit))
    out["text"] = descr.strip()
    return out


def _simple(q: dict[str, Any]) -> dict[str, Any]:
    q.pop("comparator", None)  # SimpleQuantity has none
    return q
