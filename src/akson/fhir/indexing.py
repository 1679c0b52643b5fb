"""Turn a resource into search-index rows, one list per search-parameter type.

The store writes these rows into its index tables at write time. What a parameter indexes is its
compiled FHIRPath expression (:mod:`akson.fhir.searchparams`); how a value becomes rows depends on
the parameter type and the value's FHIR datatype, inferred from its JSON shape (a dict with
``coding`` is a CodeableConcept, ``start``/``end`` a Period, …), following the tables in
https://hl7.org/fhir/R4/search.html#token, #string, #date, #reference, #quantity, #number, #uri.
"""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from akson.fhir import ucum, unions
from akson.fhir.dates import MAX_US, MIN_US, date_range
from akson.fhir.jsonio import ExactDecimal
from akson.fhir.outcome import FhirError
from akson.fhir.searchparams import SearchParamRegistry
from akson.fhir.text import normalize

Token = tuple[str, str | None, str | None]
StringRow = tuple[str, str, str]
DateRow = tuple[str, int, int]
ReferenceRow = tuple[str, str | None, str | None, str | None]
QuantityRow = tuple[str, float, str | None, str | None]
#: JSON numbers as parsed: ExactDecimal is a float that keeps its digits (akson.fhir.jsonio).
_NUMBER_TYPES = (int, float, ExactDecimal)


@dataclass
class IndexRows:
    """Index rows of one resource; each row starts with the parameter code. No duplicates.

    - ``tokens``: (param, system, code) — Coding, CodeableConcept (one per coding), Identifier
      (system, value), ContactPoint (its system such as ``phone``, value), code/string/id
      (None, value), boolean (None, ``true``/``false``).
    - ``identifier_types``: (param, type system, type code, value) for Identifiers with a
      ``type`` coding, for the ``:of-type`` modifier (search.html#token).
    - ``strings``: (param, :func:`akson.fhir.text.normalize` form, exact text).
    - ``dates``: (param, low µs, high µs), inclusive (see :mod:`akson.fhir.dates`).
    - ``references``: (param, target type, target id, absolute url or None).
    - ``quantities``: (param, value, system, code — the unit when there is no code).
    - ``numbers``: (param, value); ``uris``: (param, uri).
    """

    tokens: list[Token] = field(default_factory=list)
    identifier_types: list[tuple[str, str | None, str | None, str]] = field(default_factory=list)
    strings: list[StringRow] = field(default_factory=list)
    dates: list[DateRow] = field(default_factory=list)
    references: list[ReferenceRow] = field(default_factory=list)
    quantities: list[QuantityRow] = field(default_factory=list)
    numbers: list[tuple[str, float]] = field(default_factory=list)
    uris: list[tuple[str, str]] = field(default_factory=list)

    def dedupe(self) -> None:
        """Drop repeated rows, keeping first-seen order."""
        for name in _ROW_LISTS:
            rows = getattr(self, name)
            if len(rows) > 1:
                unique = dict.fromkeys(rows)
                if len(unique) != len(rows):
                    setattr(self, name, list(unique))


_ROW_LISTS = (
    "tokens", "identifier_types", "strings", "dates", "references", "quantities", "numbers", "uris"
)

# --- references --------------------------------------------------------------------------------

_REF_RE = re.compile(
    r"(?:(?P<base>[A-Za-z][A-Za-z0-9+.\-]*://.*?)/)?"
    r"(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})"
    r"(?:/_history/[A-Za-z0-9\-.]{1,64})?(?:\|.*)?"
)


def split_reference(ref: str) -> tuple[str | None, str | None, str | None] | None:
    """Split a reference string into (target type, target id, absolute url).

    ``Patient/123`` and ``Patient/123/_history/2`` → (``Patient``, ``123``, None);
    ``https://x/fhir/Patient/123`` → (``Patient``, ``123``, the url); a canonical
    ``http://hl7.org/fhir/ValueSet/x|4.0.1`` likewise (version ignored for the split);
    ``urn:uuid:…`` or any other url → (None, None, the url); ``#contained`` → None (not indexed).
    https://hl7.org/fhir/R4/references.html#literal
    """
    if not ref or ref[0] == "#":
        return None
    return _split(ref)


@lru_cache(maxsize=8192)
def _split(ref: str) -> tuple[str | None, str | None, str | None]:
    """`split_reference` of a literal reference, remembered: a patient's resources refer to
    the same Patient and Encounter again and again."""
    m = _REF_RE.fullmatch(ref)
    if m is None:
        return None, None, ref
    return m.group("type"), m.group("id"), (ref if m.group("base") else None)


# --- per-type row builders -------------------------------------------------------------------

_CONTACT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})
_STRING_PARTS = frozenset({
    # HumanName
    "family", "given", "prefix", "suffix",
    # Address
    "line", "city", "district", "state", "postalCode", "country",
    # both, and CodeableConcept
    "text",
})


def _add_tokens(code: str, values: list[Any], rows: IndexRows) -> None:
    out = rows.tokens
    for v in values:
        cls = v.__class__
        if cls is str:
            out.append((code, None, v))
        elif cls is bool:
            out.append((code, None, "true" if v else "false"))
        elif cls is dict:
            coding = v.get("coding")
            if coding is not None:  # CodeableConcept
                for c in _as_list(coding):
                    if c.__class__ is dict:
                        _coding(code, c, out)
            elif "code" in v:  # Coding (also a Quantity's code, harmless)
                _coding(code, v, out)
            elif "value" in v:
                system, value = v.get("system"), v.get("value")
                if value.__class__ is not str:
                    continue
                if system.__class__ is not str:
                    system = None
                if system in _CONTACT_SYSTEMS and "type" not in v and "assigner" not in v:
                    out.append((code, system, value))  # ContactPoint
                else:  # Identifier
                    out.append((code, system, value))
                    _identifier_type(code, v, value, rows)
            elif v.get("system").__class__ is str:
                out.append((code, v["system"], None))  # Identifier/Coding with a system only
        elif cls is int or cls is float or cls is ExactDecimal:
            out.append((code, None, str(v)))


def _system_code(c: dict) -> tuple[str | None, str | None] | None:
    """A Coding's (system, code), each None unless a string; None when it has neither."""
    system, code = c.get("system"), c.get("code")
    if system.__class__ is not str:
        system = None
    if code.__class__ is not str:
        code = None
    return None if system is None and code is None else (system, code)


def _coding(param: str, c: dict, out: list[Token]) -> None:
    pair = _system_code(c)
    if pair is not None:
        out.append((param, *pair))


def _identifier_type(param: str, ident: dict, value: str, rows: IndexRows) -> None:
    itype = ident.get("type")
    if itype.__class__ is not dict:
        return
    for c in _as_list(itype.get("coding")):
        if c.__class__ is dict and (pair := _system_code(c)) is not None:
            rows.identifier_types.append((param, *pair, value))


def _as_list(value: Any) -> list[Any] | tuple[Any, ...]:
    """A JSON value as a sequence of items: lists as is, None as empty, anything else as one."""
    if value.__class__ is list:
        return value
    return () if value is None else (value,)


def _add_strings(code: str, values: list[Any], rows: IndexRows) -> None:
    out = rows.strings
    for v in values:
        if v.__class__ is str:
            if v:
                out.append((code, normalize(v), v))
        elif v.__class__ is dict:  # HumanName, Address, CodeableConcept.text
            for part, p in v.items():
                if part not in _STRING_PARTS:
                    continue
                for s in _as_list(p):
                    if s.__class__ is str and s:
                        out.append((code, normalize(s), s))


def _date(value: Any) -> tuple[int, int] | None:
    if value.__class__ is not str:
        return None
    try:
        return date_range(value)
    except FhirError:
        # Validation refuses malformed dates before a write; never fail indexing over one.
        return None


def _add_dates(code: str, values: list[Any], rows: IndexRows) -> None:
    out = rows.dates
    for v in values:
        if v.__class__ is str:
            r = _date(v)
            if r is not None:
                out.append((code, r[0], r[1]))
        elif v.__class__ is dict:
            if "event" in v or "repeat" in v:  # Timing: each event; else its bounds
                events = _as_list(v.get("event"))
                for e in events:
                    r = _date(e)
                    if r is not None:
                        out.append((code, r[0], r[1]))
                repeat = v.get("repeat")
                bounds = repeat.get("boundsPeriod") if repeat.__class__ is dict else None
                if not events and bounds.__class__ is dict:
                    _period(code, bounds, out)
            elif "start" in v or "end" in v:
                _period(code, v, out)


def _period(code: str, p: dict, out: list[DateRow]) -> None:
    start, end = _date(p.get("start")), _date(p.get("end"))
    if start is None and end is None:
        return
    if start and end and start[0] > end[0]:  # reversed (invalid, per-1): its span, so low ≤ high
        start, end = end, start
    out.append((code, start[0] if start else MIN_US, end[1] if end else MAX_US))


def _add_references(code: str, values: list[Any], rows: IndexRows) -> None:
    out = rows.references
    for v in values:
        if v.__class__ is dict:
            ref = v.get("reference")
            if ref.__class__ is str:
                parts = split_reference(ref)
                if parts is not None:
                    out.append((code, *parts))
            elif v.get("resourceType").__class__ is str and v.get("id").__class__ is str:
                out.append((code, v["resourceType"], v["id"], None))  # Bundle.entry[0].resource
            # Identifier-only (logical) references are not indexed here.
        elif v.__class__ is str:  # canonical / uri
            parts = split_reference(v)
            if parts is not None:
                out.append((code, *parts))


#: The system of the extra rows in UCUM canonical form. Not UCUM's own url: a search by value
#: alone or by `value||unit` matches the literal rows only, so it must tell them apart; a search
#: naming UCUM matches both (search.html#quantity; see akson.store.search_sql).
CANONICAL_SYSTEM = "https://akson.no/fhir/CodeSystem/ucum-canonical"


def canonical_quantity(value: Any, system: str | None, unit_code: str | None
                       ) -> tuple[float, str, str] | None:
    """(value, CANONICAL_SYSTEM, canonical unit) for a UCUM quantity — system UCUM, or no
    system and a `code` that parses as UCUM (akson.fhir.ucum) — when that form is not already
    the literal one (UCUM system and a canonical code such as `g`); None otherwise.
    https://hl7.org/fhir/R4/search.html#quantity ("in canonical form")."""
    if unit_code is None or system not in (None, ucum.SYSTEM):
        return None
    converted = ucum.canonical(value, unit_code)
    if converted is None or (system is not None and converted[1] == unit_code):
        return None
    number = float(converted[0])
    return (number, CANONICAL_SYSTEM, converted[1]) if math.isfinite(number) else None


def _quantity(code: str, q: dict, out: list[QuantityRow]) -> None:
    value = q.get("value")
    if value.__class__ not in _NUMBER_TYPES:
        return
    currency = q.get("currency")
    if currency.__class__ is str:  # Money
        out.append((code, float(value), "urn:iso:std:iso:4217", currency))
        return
    system, unit_code = q.get("system"), q.get("code")
    if system.__class__ is not str:
        system = None
    if unit_code.__class__ is not str:
        unit_code = None
    canonical = canonical_quantity(value, system, unit_code)
    if unit_code is None and system is None:
        unit = q.get("unit")
        unit_code = unit if unit.__class__ is str else None
    out.append((code, float(value), system, unit_code))
    if canonical is not None:
        out.append((code, *canonical))


def _add_quantities(code: str, values: list[Any], rows: IndexRows) -> None:
    out = rows.quantities
    for v in values:
        if v.__class__ is not dict:
            continue
        if "value" in v:
            _quantity(code, v, out)
        elif "low" in v or "high" in v:  # Range: both ends (approximation, see module doc)
            for end in (v.get("low"), v.get("high")):
                if end.__class__ is dict:
                    _quantity(code, end, out)
        # SampledData (origin + data) is not indexed.


def _add_numbers(code: str, values: list[Any], rows: IndexRows) -> None:
    out = rows.numbers
    for v in values:
        if v.__class__ in _NUMBER_TYPES:
            out.append((code, float(v)))
        elif v.__class__ is dict:  # Quantity-like or Range
            low, high = v.get("low"), v.get("high")
            for n in (
                v.get("value"),
                low.get("value") if low.__class__ is dict else None,
                high.get("value") if high.__class__ is dict else None,
            ):
                if n.__class__ in _NUMBER_TYPES:
                    out.append((code, float(n)))


def _add_uris(code: str, values: list[Any], rows: IndexRows) -> None:
    out = rows.uris
    for v in values:
        if v.__class__ is str and v:
            out.append((code, v))


_Builder = Callable[[str, list[Any], IndexRows], None]
_BUILDERS: dict[str, _Builder] = {
    "token": _add_tokens,
    "string": _add_strings,
    "date": _add_dates,
    "reference": _add_references,
    "quantity": _add_quantities,
    "number": _add_numbers,
    "uri": _add_uris,
}
# Kept as resource columns by the store, not as index rows.
_COLUMN_PARAMS = frozenset({"_id", "_lastUpdated"})

_Plan = tuple[tuple[str, Callable[[dict], list[Any]], _Builder], ...]
# Per registry (weakly held) and resource type: (registry version, plan).
_PLANS: weakref.WeakKeyDictionary[SearchParamRegistry, dict[str, tuple[int, _Plan]]] = (
    weakref.WeakKeyDictionary()
)


def _plan(registry: SearchParamRegistry, resource_type: str) -> _Plan:
    """(code, extractor, row builder) for every indexable parameter of the type (cached)."""
    per_type = _PLANS.get(registry)
    if per_type is None:
        per_type = _PLANS.setdefault(registry, {})
    cached = per_type.get(resource_type)
    if cached is not None and cached[0] == registry.version:
        return cached[1]
    version = registry.version
    plan = []
    copied = unions.copied(registry, resource_type)
    for code, p in registry.for_type(resource_type).items():
        builder = _BUILDERS.get(p.type)
        fn = p.extractor(resource_type)
        if builder is None or fn is None or code in _COLUMN_PARAMS or code in copied:
            continue  # composite and special parameters are not indexed (yet); unions copied
        plan.append((code, fn, builder))
    result = tuple(plan)
    per_type[resource_type] = (version, result)
    return result


def extract(resource: dict, registry: SearchParamRegistry | None = None,
            seen: dict[str, list[Any]] | None = None) -> IndexRows:
    """Index rows for every search parameter of the resource's type; with `seen`, also each
    parameter's extracted values by code, so `search.extra_index_rows` need not extract
    them again.

    Includes the common ``_tag``, ``_security`` (tokens), ``_profile`` and ``_source`` (uris);
    leaves out ``_id`` and ``_lastUpdated`` (store columns), composite and special parameters.
    Values that cannot be indexed (a malformed date, a ``#contained`` or identifier-only
    reference) are skipped rather than raised: validation is the place to refuse them.
    """
    reg = registry or SearchParamRegistry.default()
    rows = IndexRows()
    rtype = resource.get("resourceType")
    if rtype.__class__ is not str:
        return rows
    for code, fn, builder in _plan(reg, rtype):
        values = fn(resource)
        if seen is not None:
            seen[code] = values
        if values:
            builder(code, values, rows)
    by_source = unions.copied_from(reg, rtype)
    if by_source:
        for name in _ROW_LISTS:
            found = getattr(rows, name)
            if found:
                found += unions.copies(found, by_source)
    rows.dedupe()
    return rows


# --- patient compartment -----------------------------------------------------------------------

# Parameters linking a resource to its patient, in order of preference, after the R4 Patient
# CompartmentDefinition (https://hl7.org/fhir/R4/compartmentdefinition-patient.html). Only the
# parameters naming the record's subject are kept, not those where a patient merely acts
# (performer, author, sender …), so a resource lands in the record it is about. Group and Person
# are absent on purpose: they link several patients and belong to none.
PATIENT_COMPARTMENT: dict[str, tuple[str, ...]] = {
    "Account": ("subject",),
    "AdverseEvent": ("subject",),
    "AllergyIntolerance": ("patient",),
    "Appointment": ("patient", "actor"),
    "AppointmentResponse": ("patient", "actor"),
    "AuditEvent": ("patient",),
    "Basic": ("patient", "subject"),
    "BodyStructure": ("patient",),
    "CarePlan": ("patient", "subject"),
    "CareTeam": ("patient", "subject"),
    "ChargeItem": ("patient", "subject"),
    "Claim": ("patient",),
    "ClaimResponse": ("patient",),
    "ClinicalImpression": ("patient", "subject"),
    "Communication": ("patient", "subject"),
    "CommunicationRequest": ("patient", "subject"),
    "Composition": ("patient", "subject"),
    "Condition": ("patient", "subject"),
    "Consent": ("patient",),
    "Coverage": ("beneficiary", "patient", "subscriber", "policy-holder"),
    "CoverageEligibilityRequest": ("patient",),
    "CoverageEligibilityResponse": ("patient",),
    "DetectedIssue": ("patient",),
    "DeviceRequest": ("patient", "subject"),
    "DeviceUseStatement": ("patient", "subject"),
    "DiagnosticReport": ("patient", "subject"),
    "DocumentManifest": ("patient", "subject"),
    "DocumentReference": ("patient", "subject"),
    "Encounter": ("patient", "subject"),
    "EnrollmentRequest": ("patient", "subject"),
    "EpisodeOfCare": ("patient",),
    "ExplanationOfBenefit": ("patient",),
    "FamilyMemberHistory": ("patient",),
    "Flag": ("patient", "subject"),
    "Goal": ("patient", "subject"),
    "ImagingStudy": ("patient", "subject"),
    "Immunization": ("patient",),
    "ImmunizationEvaluation": ("patient",),
    "ImmunizationRecommendation": ("patient",),
    "Invoice": ("patient", "subject"),
    "List": ("patient", "subject"),
    "MeasureReport": ("patient", "subject"),
    "Media": ("patient", "subject"),
    "MedicationAdministration": ("patient", "subject"),
    "MedicationDispense": ("patient", "subject"),
    "MedicationRequest": ("patient", "subject"),
    "MedicationStatement": ("patient", "subject"),
    "MolecularSequence": ("patient",),
    "NutritionOrder": ("patient",),
    "Observation": ("patient", "subject"),
    "Procedure": ("patient", "subject"),
    "Provenance": ("patient",),
    "QuestionnaireResponse": ("patient", "subject"),
    "RelatedPerson": ("patient",),
    "RequestGroup": ("patient", "subject"),
    "ResearchSubject": ("individual", "patient"),
    "RiskAssessment": ("patient", "subject"),
    "Schedule": ("actor",),
    "ServiceRequest": ("patient", "subject"),
    "Specimen": ("patient", "subject"),
    "SupplyDelivery": ("patient",),
    "SupplyRequest": ("subject",),
    "Task": ("patient",),
    "VisionPrescription": ("patient",),
}
_FALLBACK_PARAMS = ("patient", "subject", "beneficiary", "individual")
_NO_COMPARTMENT = frozenset({"Group", "Person"})


def patient_compartment(resource: dict, rows: IndexRows) -> str | None:
    """The id of the Patient whose record this resource belongs to, or None.

    A Patient belongs to itself. Otherwise the first local (relative) reference to a Patient
    among the type's parameters in :data:`PATIENT_COMPARTMENT` (in that order) wins; types not
    listed try ``patient``, ``subject``, ``beneficiary``, ``individual``. Absolute references are
    ignored: a patient on another server is not a record here. Best effort, not the full
    CompartmentDefinition (https://hl7.org/fhir/R4/compartmentdefinition-patient.html).
    """
    rtype = resource.get("resourceType")
    if rtype.__class__ is not str or rtype in _NO_COMPARTMENT:
        return None
    if rtype == "Patient":
        rid = resource.get("id")
        return rid if rid.__class__ is str else None
    for param in PATIENT_COMPARTMENT.get(rtype, _FALLBACK_PARAMS):
        for code, target_type, target_id, url in rows.references:
            if code == param and target_type == "Patient" and url is None and target_id:
                return target_id
    return None


# Per (registry, type): the type's plan and, from it, the compartment's reference parameters in
# order of preference with their extractors; stale once `_plan` returns another plan.
_CompartmentPlan = tuple[tuple[str, Callable[[dict], list[Any]]], ...]
_COMPARTMENT_PLANS: dict[tuple[int, str], tuple[_Plan, _CompartmentPlan]] = {}


def _compartment_plan(registry: SearchParamRegistry, rtype: str) -> _CompartmentPlan:
    plan = _plan(registry, rtype)
    cached = _COMPARTMENT_PLANS.get((id(registry), rtype))
    if cached is not None and cached[0] is plan:
        return cached[1]
    refs = {code: fn for code, fn, builder in plan if builder is _add_references}
    params = tuple((p, refs[p]) for p in PATIENT_COMPARTMENT.get(rtype, _FALLBACK_PARAMS)
                   if p in refs)
    _COMPARTMENT_PLANS[(id(registry), rtype)] = (plan, params)
    return params


def compartment(resource: dict, registry: SearchParamRegistry | None = None) -> str | None:
    """`patient_compartment(resource, extract(resource, registry))`, extracting only the
    parameters it reads: the access gate asks this of every resource written, before the
    store extracts all of them (a whole extraction is 60-120 µs; a Patient needs none)."""
    rows = IndexRows()
    rtype = resource.get("resourceType")
    if rtype.__class__ is str:
        for param, fn in _compartment_plan(registry or SearchParamRegistry.default(), rtype):
            _add_references(param, fn(resource), rows)
    return patient_compartment(resource, rows)
