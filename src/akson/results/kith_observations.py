"""KITH `ResultItem` (nested, with `RefIdResultItem` links) → FHIR R4 Observations.

Follows NHN's "Mapping fra XML til FHIR", section ResultItem (Observation) and Observation.Status:
Investigation/Id → code (NLK, NCRP, NORPAT, other OIDs as `urn:oid:`), Investigation/Spec → method,
NumResult → valueQuantity (UCUM where the unit is UCUM, comparator from ArithmeticComp or a `<5`
value, decimal commas), TextResult → valueCodeableConcept (TextCode) or valueString, Interval →
valueRange, DateResult → valueDateTime, RefInterval → referenceRange, DevResultInd →
interpretation, Comment / DiagComment / Investigation/Comment → note, collection date of the
referenced specimen (else InvDate, else the report's IssueDate) → effectiveDateTime. Nested
ResultItems are the parent's `hasMember`; an item naming another by `RefIdResultItem` (a
resistance result naming its isolate) is that item's `hasMember` and `derivedFrom` it. A result
whose value cannot be read is kept as valueString with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final
from xml.etree.ElementTree import Element

from akson.results import kith_values as kv
from akson.results.kith_parties import Party, party, practitioner_role
from akson.results.model import NORPAT_SYSTEM, resource_id

OBS_CATEGORY_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/observation-category"

#: Observation.status from (ResultItem/ServType 8270, StatusInvestigation 8245): NHN's table.
#: Columns N, M, C, H, A; "" is a missing StatusInvestigation.
_F, _A, _C, _P, _R, _U = "final", "amended", "cancelled", "preliminary", "registered", "unknown"
OBSERVATION_STATUS: Final = {
    "": (_F, _A, _C, _F, _F), "1": (_U, _A, _C, _A, _U), "2": (_P, _A, _C, _P, _P),
    "3": (_F, _A, _C, _F, _F), "4": (_F, _A, _C, _F, _F), "5": (_R, _U, _C, _U, _R),
    "6": (_R, _R, _C, _U, _R), "7": (_R, _R, _C, _U, _R), "8": (_P, _U, _C, _U, _P),
    "9": (_P, _U, _C, _U, _P), "10": (_P, _U, _C, _U, _P), "11": (_F, _A, _C, _U, _F),
    "12": (_U, _A, _C, _U, _P), "13": (_F, _A, _C, _U, _F), "14": (_U, _U, _C, _U, _U),
    "15": (_R, _R, _C, _F, _R),
}
_SERV_TYPES: Final = ("N", "M", "C", "H", "A")
#: StatusInvestigation codes meaning the result is final / not yet final (for "delsvar").
FINAL_CODES: Final = frozenset({"3", "4", "11", "13"})
PENDING_CODES: Final = frozenset({"2", "5", "6", "7", "8", "9", "10", "12", "15"})
#: TextResult headings whose text is the report's conclusion ("Vurdering", "Konklusjon").
CONCLUSION_HEADINGS: Final = frozenset({"VU", "KO", "KONK"})


@dataclass
class Context:
    """What the Observations of one report share, and what they collect for the report."""

    report_key: str
    issued: str | None
    fallback_effective: str | None
    imaging: bool
    report_serv_type: str
    specimens: dict[str, tuple[str, str | None]]  # IdByServProvider → (resource id, collected)
    default_performers: list[str]  # PractitionerRole ids
    warnings: list[str]
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)
    interpreters: list[str] = field(default_factory=list)
    used: set[str] = field(default_factory=set)
    by_item_id: dict[str, str] = field(default_factory=dict)  # IdResultItem → Observation id
    statuses: list[str] = field(default_factory=list)  # StatusInvestigation codes seen
    conclusions: list[str] = field(default_factory=list)
    conclusion_codes: list[dict[str, Any]] = field(default_factory=list)

    def role(self, actor: Party, relation: Element | None) -> str:
        """Register the PractitionerRole of `actor` once; return its id."""
        if actor.role_id not in self.roles:
            self.roles[actor.role_id] = practitioner_role(actor, relation)
        return actor.role_id


def observations(items: list[Element], ctx: Context) -> list[dict[str, Any]]:
    """All Observations of the top-level `items` (nested ones included), parents first."""
    out: list[dict[str, Any]] = []
    links: list[tuple[dict[str, Any], str]] = []
    for i, item in enumerate(items, 1):
        _walk(item, ctx, None, i, out, links)
    for obs, target_key in links:
        target = ctx.by_item_id.get(target_key)
        if target is None or target == obs["id"]:
            ctx.warnings.append("a result refers to a result item the message does not hold")
            continue
        obs.setdefault("derivedFrom", []).append({"reference": f"Observation/{target}"})
        parent = next(o for o in out if o["id"] == target)
        parent.setdefault("hasMember", []).append({"reference": f"Observation/{obs['id']}"})
    return out


def local_principal(item: Element, ctx: Context, parent: _Parent | None, position: int) -> str:
    """A local name stable across deliveries: the lab's IdResultItem, else code + specimen, else
    the position (under the parent, for nested items)."""
    item_id = (item.findtext("IdResultItem") or "").strip()
    code = kv.attr(item.find("Investigation/Id"))
    specimen = (item.findtext("RefAnalysedSubject") or "").strip()
    if item_id:
        base = f"id:{item_id}"
    elif code:
        base = f"code:{code}@{specimen}"
    else:
        base = f"pos:{position}"
    local = f"{parent.local}/{base}" if parent else f"obs/{base}"
    candidate, n = local, 1
    while candidate in ctx.used:
        n += 1
        candidate = f"{local}#{n}"
    ctx.used.add(candidate)
    return candidate


@dataclass(frozen=True)
class _Parent:
    local: str
    serv_type: str
    status: str
    code: dict[str, Any] | None
    performers: tuple[str, ...]
    specimen: str | None


def _walk(item: Element, ctx: Context, parent: _Parent | None, position: int,
          out: list[dict[str, Any]], links: list[tuple[dict[str, Any], str]]) -> str:
    local = local_principal(item, ctx, parent, position)
    oid = resource_id(ctx.report_key, local)
    serv_type = kv.attr(item.find("ServType")) or (parent.serv_type if parent
                                                     else ctx.report_serv_type)
    status_code = kv.attr(item.find("StatusInvestigation")) or (parent.status if parent else "")
    ctx.statuses.append(status_code)
    obs: dict[str, Any] = {"resourceType": "Observation", "id": oid,
                           "status": _status(serv_type, status_code)}
    item_id = (item.findtext("IdResultItem") or "").strip()
    if item_id:
        obs["identifier"] = [{"value": item_id}]
        ctx.by_item_id.setdefault(item_id, oid)
    heading = item.find("TextResult/Heading")
    obs["category"] = [{"coding": [{"system": OBS_CATEGORY_SYSTEM,
                                    "code": "imaging" if ctx.imaging else "laboratory"}]}]
    heading_code = kv.coding(heading)
    if heading_code:
        obs["category"].append({"coding": [heading_code]})
    ids = [el for inv in item.findall("Investigation") for el in inv.findall("Id")]
    code = kv.concept(ids)
    if code is None:
        heading_text = kv.attr(heading, "DN") or kv.attr(heading)
        code = {"text": heading_text} if heading_text else (parent.code if parent else None)
    obs["code"] = code or {"text": "Resultat"}
    method = kv.concept([el for inv in item.findall("Investigation") for el in inv.findall("Spec")])
    if method:
        obs["method"] = method
    unit = _value(item, obs, ctx, position)
    interp = kv.interpretation(item.find("DevResultInd"))
    if interp:
        obs["interpretation"] = [interp]
    elif kv.attr(item.find("DevResultInd")):
        ctx.warnings.append("a result has an abnormal-flag code this service does not know")
    ranges = [kv.reference_range(d, unit) for d in
              ((r.findtext("Descr") or "").strip() for r in item.findall("RefInterval")) if d]
    if ranges:
        obs["referenceRange"] = ranges
    specimen = _specimen(item, ctx) or (parent.specimen if parent else None)
    effective = (ctx.specimens.get(specimen or "", ("", None))[1]
                 or kv.date_time(kv.attr(item.find("InvDate"))) or ctx.fallback_effective)
    if effective:
        obs["effectiveDateTime"] = effective
    if ctx.issued:
        obs["issued"] = ctx.issued
    performers = _performers(item, ctx) or (parent.performers if parent else ())
    performers = performers or tuple(ctx.default_performers)
    if performers:
        obs["performer"] = [{"reference": f"PractitionerRole/{p}"} for p in performers]
    notes = _notes(item)
    if notes:
        obs["note"] = [{"text": n} for n in notes]
    if specimen and specimen in ctx.specimens:
        obs["specimen"] = {"reference": f"Specimen/{ctx.specimens[specimen][0]}"}
    out.append(obs)
    target = (item.findtext("RefIdResultItem") or "").strip()
    if target:
        links.append((obs, target))
    me = _Parent(local, serv_type, status_code, obs["code"], performers, specimen)
    members = [_walk(child, ctx, me, i, out, links)
               for i, child in enumerate(item.findall("ResultItem"), 1)]
    if members:
        obs["hasMember"] = [{"reference": f"Observation/{m}"} for m in members]
    return oid


def _status(serv_type: str, status_code: str) -> str:
    row = OBSERVATION_STATUS.get(status_code, OBSERVATION_STATUS[""])
    column = _SERV_TYPES.index(serv_type) if serv_type in _SERV_TYPES else 0
    return row[column]


def _specimen(item: Element, ctx: Context) -> str | None:
    refs = [(r.text or "").strip() for r in item.findall("RefAnalysedSubject")]
    # NHN: the standard allows several; in practice one is used, and so do we (the first known).
    return next((r for r in refs if r in ctx.specimens), None)


def _performers(item: Element, ctx: Context) -> tuple[str, ...]:
    out: list[str] = []
    for rel in item.findall("RelServProv"):
        actor = party(rel.find("HCP"), ctx.warnings)
        if actor is not None:
            role = ctx.role(actor, rel.find("Relation"))
            if role not in out:
                out.append(role)
            if role not in ctx.interpreters:
                ctx.interpreters.append(role)
    return tuple(out)


def _notes(item: Element) -> list[str]:
    notes = [(item.findtext("Comment") or "").strip()]
    for inv in item.findall("Investigation"):
        notes.append((inv.findtext("Comment") or "").strip())
    diag = item.find("DiagComment/Concept")
    if diag is not None:
        label = kv.attr(diag, "DN") or kv.attr(diag, "OT") or kv.attr(diag)
        notes.append(f"Diagnostisk kommentar: {label}" if label else "")
    return [n for n in notes if n]


def _value(item: Element, obs: dict[str, Any], ctx: Context, position: int) -> str | None:
    """Set obs.value[x]; return the unit (for the reference range)."""
    num = item.find("NumResult")
    if num is not None:
        return _numeric(num, obs, ctx, position)
    textual = item.find("TextResult")
    if textual is not None:
        _textual(textual, obs, ctx)
        return None
    interval = item.find("Interval")
    if interval is not None:
        value_range: dict[str, Any] = {}
        for name in ("Low", "High"):
            el = interval.find(name)
            parsed = kv.number(kv.attr(el) or "") if el is not None else None
            if parsed is not None and parsed[0] is None:
                value_range[name.lower()] = kv.quantity(parsed[1], kv.attr(el, "U"))
        if value_range:
            obs["valueRange"] = value_range
        else:
            ctx.warnings.append(f"result {position}: an interval without readable limits")
        return None
    date = item.find("DateResult/DateResultValue")
    if date is not None:
        raw = kv.attr(date)
        value = kv.date_time(raw)
        if value:
            obs["valueDateTime"] = value
        elif raw:
            obs["valueString"] = raw
            ctx.warnings.append(f"result {position}: an unreadable date kept as text")
    return None


def _numeric(num: Element, obs: dict[str, Any], ctx: Context, position: int) -> str | None:
    value_el = num.find("NumResultValue")
    raw, unit = kv.attr(value_el), kv.attr(value_el, "U")
    if unit in ("0", "1"):
        unit = None  # "no unit" written as a number by some labs
    parsed = kv.number(raw) if raw else None
    if parsed is None:
        if raw:
            obs["valueString"] = f"{raw} {unit}" if unit else raw
            ctx.warnings.append(f"result {position}: a value that is not a number kept as text")
        return unit
    comparator = kv.COMPARATORS.get((kv.attr(num.find("ArithmeticComp")) or "").upper())
    obs["valueQuantity"] = kv.quantity(parsed[1], unit, comparator or parsed[0])
    return unit


def _textual(tr: Element, obs: dict[str, Any], ctx: Context) -> None:
    value_text = kv.text(tr.find("TextResultValue"))
    unit = (tr.findtext("Unit") or "").strip()
    if value_text and unit:
        value_text = f"{value_text} {unit}"
    codes = tr.findall("TextCode")
    heading = kv.attr(tr.find("Heading"))
    if codes:
        cc = kv.concept(codes, value_text)
        if cc:
            obs["valueCodeableConcept"] = cc
            ctx.conclusion_codes.extend(
                c for c in cc.get("coding", []) if c.get("system") == NORPAT_SYSTEM
            )
    elif value_text:
        obs["valueString"] = value_text
    if heading in CONCLUSION_HEADINGS and value_text:
        ctx.conclusions.append(value_text)
