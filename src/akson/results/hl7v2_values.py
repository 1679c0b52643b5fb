"""HL7 v2 OBX values to FHIR Observation elements: value[x] by OBX-2, reference range,
interpretation, and ED documents as attachments.

Spec: HL7 v2-to-FHIR IG, "OBX[Observation]" segment map and the OBX-5 value type table
(https://build.fhir.org/ig/HL7/v2-to-fhir/); HL7 v2.5.1 §7.4.2 (OBX). Pure.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from akson.results import hl7v2_types as t
from akson.results.hl7v2_syntax import Segment, dtm_to_fhir

_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
_MIME = {"PDF": "application/pdf", "JPEG": "image/jpeg", "JPG": "image/jpeg", "PNG": "image/png",
         "TIFF": "image/tiff", "GIF": "image/gif", "RTF": "application/rtf",
         "HTML": "text/html", "XML": "text/xml", "PLAIN": "text/plain", "TEXT": "text/plain"}


def dtm_or_warn(value: str, where: str, warnings: list[str]) -> str | None:
    """A date/time field as FHIR; one that cannot be read is left out with a warning (senders
    put placeholders such as `0000` in them, and the result is worth more than the time)."""
    try:
        return dtm_to_fhir(value)
    except ValueError:
        warnings.append(f"{where} is not a valid HL7 date/time; left out")
        return None


def observation_value(obs: dict[str, Any], obx: Segment, presented: list[dict[str, Any]],
                      warnings: list[str]) -> None:
    """OBX-5 by OBX-2 value type."""
    vtype = obx.comp(2).upper()
    reps = obx.reps(5)
    if not reps:
        return
    first, units = reps[0], obx.first(6)
    plain = "\n".join(t.text(rep, 1) if len(rep) == 1 else "^".join(
        t.text(rep, c) for c in range(1, len(rep) + 1)) for rep in reps)
    if vtype == "NM":
        value = t.number(t.sub(first, 1))
        if value is None:
            warnings.append("an NM value in OBX-5 is not a number; kept as text")
            obs["valueString"] = plain
        else:
            obs["valueQuantity"] = t.quantity(value, units)
    elif vtype == "SN":
        got = t.structured_numeric(first, units)
        if got:
            obs[got[0]] = got[1]
    elif vtype in ("CWE", "CE", "CNE", "CF"):
        cc = t.codeable(first)
        if cc:
            obs["valueCodeableConcept"] = cc
    elif vtype in ("IS", "ID"):
        obs["valueCodeableConcept"] = {"coding": [{"code": t.sub(first, 1)}]}
    elif vtype in ("DT", "DTM", "TS"):
        when = dtm_or_warn(t.sub(first, 1), "OBX-5", warnings)
        if when:
            obs["valueDateTime"] = when
    elif vtype == "TM":
        digits = t.sub(first, 1).split("+")[0].split("-")[0]
        if len(digits) >= 2 and digits[:6].isdigit():
            padded = (digits[:6] + "0000")[:6]
            obs["valueTime"] = f"{padded[:2]}:{padded[2:4]}:{padded[4:6]}"
    elif vtype == "NR":
        low, high = t.number(t.sub(first, 1)), t.number(t.sub(first, 2))
        rng: dict[str, Any] = {}
        if low is not None:
            rng["low"] = t.quantity(low, units)
        if high is not None:
            rng["high"] = t.quantity(high, units)
        if rng:
            obs["valueRange"] = rng
    elif vtype == "DR":
        start = dtm_or_warn(t.sub(first, 1), "OBX-5", warnings)
        end = dtm_or_warn(t.sub(first, 2), "OBX-5", warnings)
        period = {k: v for k, v in (("start", start), ("end", end)) if v}
        if period:
            obs["valuePeriod"] = period
    elif vtype == "VR":
        obs["valueString"] = "-".join(p for p in (t.sub(first, 1), t.sub(first, 2)) if p)
    elif vtype == "ED":
        attachment = _attachment(first, obs["code"].get("text") or _display(obs["code"]))
        if attachment:
            presented.append(attachment)
            obs["valueString"] = "(document in DiagnosticReport.presentedForm)"
        else:
            warnings.append("an ED value in OBX-5 could not be read")
    elif plain:
        obs["valueString"] = plain


def _display(cc: dict[str, Any]) -> str:
    for coding in cc.get("coding", []):
        if coding.get("display"):
            return str(coding["display"])
    return ""


def interpretation(comps: t.Comps) -> dict[str, Any] | None:
    """OBX-8 (HL7 table 0078, the same codes as v3 ObservationInterpretation)."""
    code = t.sub(comps, 1)
    if not code:
        return None
    system = t.sub(comps, 3).upper()
    coding: dict[str, Any] = {"code": code}
    if system in ("", "HL70078"):
        coding["system"] = _INTERPRETATION
    elif (uri := t.system_uri(system)) is not None:
        coding["system"] = uri
    if t.text(comps, 2):
        coding["display"] = t.text(comps, 2)
    return {"coding": [coding]}


def reference_range(written: str, units: t.Comps) -> dict[str, Any]:
    """OBX-7: `low-high`, `<high`, `>low` give low/high; the text is always kept."""
    rng: dict[str, Any] = {}
    text = written.strip()
    body = text.replace(" ", "")
    if body.startswith(("<", "\u2264")) and (v := t.number(body.lstrip("<=\u2264"))) is not None:
        rng["high"] = t.quantity(v, units)
    elif body.startswith((">", "\u2265")) and (v := t.number(body.lstrip(">=\u2265"))) is not None:
        rng["low"] = t.quantity(v, units)
    else:
        split = body.find("-", 1)
        if split > 0:
            low, high = t.number(body[:split]), t.number(body[split + 1:])
            if low is not None and high is not None:
                rng["low"], rng["high"] = t.quantity(low, units), t.quantity(high, units)
    rng["text"] = text
    return rng


def _attachment(comps: t.Comps, title: str) -> dict[str, Any] | None:
    """ED (2 type of data, 3 subtype, 4 encoding, 5 data) → Attachment with base64 data."""
    subtype, encoding, data = t.sub(comps, 3).upper(), t.sub(comps, 4).upper(), t.sub(comps, 5)
    if not data:
        return None
    try:
        if encoding in ("BASE64", "B64"):
            raw = base64.b64decode("".join(data.split()), validate=True)
        elif encoding == "HEX":
            raw = bytes.fromhex(data)
        else:
            raw = data.encode("utf-8")
    except (binascii.Error, ValueError):
        return None
    kind = t.sub(comps, 2).upper()
    content_type = _MIME.get(subtype) or ("text/plain" if kind in ("TEXT", "TX") else
                                          "application/octet-stream")
    out: dict[str, Any] = {"contentType": content_type,
                           "data": base64.b64encode(raw).decode("ascii")}
    if title:
        out["title"] = title
    return out
