"""Subset a resource for `_summary` and `_elements` (R4 search.html#summary, #elements); pure.

https://hl7.org/fhir/R4/search.html#summary and https://hl7.org/fhir/R4/search.html#elements:
a subsetted resource keeps `resourceType`, `id`, `meta` and its mandatory top-level elements, and
carries the `SUBSETTED` tag so nobody mistakes it for the whole resource (and writes it back).

Which elements are "summary" (`isSummary` in the R4 StructureDefinitions) is not in the R4 JSON
schema we ship, so `SUMMARY` lists them for the resource types this record holds most. For any
other type `_summary=true` keeps a documented approximation (`FALLBACK_SUMMARY`): `identifier`,
`status`, `code`, `subject`, `patient`, plus every top-level element whose schema type is a
Reference, a code (or enum), a Coding or a CodeableConcept — what lists and pickers show.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any

import orjson

from akson.fhir.outcome import FhirError

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
             "code": "SUBSETTED", "display": "subsetted"}
SUMMARY_MODES = frozenset({"true", "text", "data", "count", "false"})

#: Top-level `isSummary` elements of R4 (4.0.1) resources; `x` is the choice `x[x]`.
SUMMARY: dict[str, frozenset[str]] = {k: frozenset(v.split()) for k, v in {
    "Patient": "identifier active name telecom gender birthDate deceased address "
               "managingOrganization link",
    "Practitioner": "identifier active name telecom address gender birthDate",
    "PractitionerRole": "identifier active period practitioner organization code specialty "
                        "location healthcareService telecom endpoint",
    "Organization": "identifier active type name partOf",
    "Observation": "identifier basedOn partOf status code subject focus encounter effective "
                   "issued performer value hasMember derivedFrom component",
    "Encounter": "identifier status class type serviceType subject episodeOfCare participant "
                 "appointment reasonCode reasonReference diagnosis",
    "EpisodeOfCare": "identifier status type diagnosis patient managingOrganization period "
                     "referralRequest careManager team account",
    "Condition": "identifier clinicalStatus verificationStatus code bodySite subject encounter "
                 "onset abatement recordedDate recorder asserter",
    "MedicationStatement": "identifier basedOn partOf status category medication subject "
                           "context effective dateAsserted",
    "MedicationRequest": "identifier status statusReason intent category priority doNotPerform "
                         "reported medication subject encounter authoredOn requester "
                         "reasonCode reasonReference",
    "Medication": "identifier code status manufacturer form amount",
    "Immunization": "status vaccineCode patient occurrence primarySource performer "
                    "isSubpotent",
    "DiagnosticReport": "identifier basedOn status category code subject encounter effective "
                        "issued performer resultsInterpreter",
    "AllergyIntolerance": "identifier clinicalStatus verificationStatus type category "
                          "criticality code patient encounter onset recordedDate recorder "
                          "asserter lastOccurrence reaction",
    "Procedure": "identifier instantiatesCanonical instantiatesUri basedOn partOf status "
                 "statusReason category code subject encounter performed recorder asserter "
                 "performer location reasonCode reasonReference bodySite",
    "CarePlan": "identifier instantiatesCanonical instantiatesUri basedOn replaces partOf "
                "status intent category title description subject encounter period created "
                "author contributor careTeam addresses goal",
}.items()}
#: Mandatory (min 1) top-level elements the schema's `required` lists miss: it names complex
#: elements only, while a primitive may also be given as `_x` alone.
MANDATORY: dict[str, frozenset[str]] = {k: frozenset(v.split()) for k, v in {
    "Observation": "status code",
    "Encounter": "status class",
    "EpisodeOfCare": "status patient",
    "MedicationStatement": "status medication subject",
    "MedicationRequest": "status intent medication subject",
    "Immunization": "status vaccineCode patient occurrence",
    "DiagnosticReport": "status code",
    "AllergyIntolerance": "patient",
    "Procedure": "status subject",
    "CarePlan": "status intent subject",
}.items()}
FALLBACK_SUMMARY = frozenset({"identifier", "status", "code", "subject", "patient"})
#: Kept by every subset (Resource elements, all of them summary).
_ALWAYS = frozenset({"resourceType", "id", "meta", "implicitRules"})
_CODE_TYPES = frozenset({"code", "Coding", "CodeableConcept", "Reference"})
_NAME = re.compile(r"[a-z][A-Za-z0-9]{0,63}")


@cache
def _definitions() -> dict[str, Any]:
    raw = resources.files("akson.fhir.data").joinpath("fhir.schema.json").read_bytes()
    return dict(orjson.loads(raw)["definitions"])


def _base(key: str, names: frozenset[str]) -> str | None:
    """The element name in `names` that JSON key `key` belongs to: itself, its `_key` sibling
    (a primitive's extensions) or a choice `value[x]` spelt `valueQuantity`."""
    key = key[1:] if key.startswith("_") else key
    if key in names:
        return key
    for i in range(1, len(key)):
        if key[i].isupper():
            return key[:i] if key[:i] in names else None
    return None


@cache
def mandatory(res_type: str) -> frozenset[str]:
    """Top-level elements a subset must keep: min 1 in R4 (schema `required` plus MANDATORY)."""
    required = _definitions().get(res_type, {}).get("required", ())
    return frozenset(required) | MANDATORY.get(res_type, frozenset())


@cache
def summary_elements(res_type: str) -> frozenset[str]:
    """`_summary=true` elements of `res_type`: SUMMARY, else the fallback rule (module doc)."""
    if res_type in SUMMARY:
        return SUMMARY[res_type] | mandatory(res_type)
    out = set(FALLBACK_SUMMARY) | mandatory(res_type)
    for name, prop in _definitions().get(res_type, {}).get("properties", {}).items():
        ref = prop.get("$ref") or (prop.get("items") or {}).get("$ref") or ""
        if "enum" in prop or "enum" in (prop.get("items") or {}) or \
                ref.rpartition("/")[2] in _CODE_TYPES:
            out.add(name)
    return frozenset(out)


def summary_mode(raw: str) -> str:
    """The `_summary` value, or a 400 (search.html#summary)."""
    if raw not in SUMMARY_MODES:
        raise FhirError(400, "_summary must be true, text, data, count or false")
    return raw


def element_names(res_type: str | None, raw: str) -> tuple[str, ...]:
    """The `_elements` list (search.html#elements): top-level element names, optionally spelt
    `Type.name`; a name `res_type` does not have is a 400 rather than a silent empty result."""
    names: list[str] = []
    for item in raw.split(","):
        name = item.strip()
        if res_type and name.startswith(res_type + "."):
            name = name[len(res_type) + 1:]
        if not _NAME.fullmatch(name):
            raise FhirError(400, f"_elements: '{name[:64]}' is not an element name")
        props = _definitions().get(res_type, {}).get("properties", {}) if res_type else None
        if props and name not in props and not any(
                p.startswith(name) and p[len(name):][:1].isupper() for p in props):
            raise FhirError(400, f"_elements: {res_type} has no element '{name}'",
                            "not-supported")
        names.append(name)
    return tuple(dict.fromkeys(names))


def is_shaping(summary: str | None, elements: tuple[str, ...]) -> bool:
    """Whether `shape` would change a resource (else the stored bytes are served as they are)."""
    return bool(elements) or summary in ("true", "text", "data")


def shape(resource: dict, *, summary: str | None = None, elements: tuple[str, ...] = ()
          ) -> dict:
    """`resource` subset for `_summary` (true, text, data) or `_elements`, tagged SUBSETTED.

    `_elements` wins when both are given (search.py refuses that combination anyway); the input
    is not modified.
    """
    if not is_shaping(summary, elements):
        return resource
    res_type = str(resource.get("resourceType", ""))
    keep: frozenset[str] | None
    if elements:
        keep = frozenset(elements) | mandatory(res_type) | _ALWAYS
    elif summary == "true":
        keep = summary_elements(res_type) | _ALWAYS
    elif summary == "text":
        keep = mandatory(res_type) | _ALWAYS | {"text"}
    else:  # data: everything but the narrative
        keep = None
    out = {k: v for k, v in resource.items()
           if (k != "text" if keep is None else _base(k, keep) is not None)}
    return _tag_subsetted(out)


def _tag_subsetted(resource: dict) -> dict:
    meta = dict(resource.get("meta") or {})
    tags = [t for t in meta.get("tag") or () if not (
        isinstance(t, dict) and t.get("system") == SUBSETTED["system"]
        and t.get("code") == SUBSETTED["code"])]
    meta["tag"] = [*tags, dict(SUBSETTED)]
    resource["meta"] = meta
    # `meta` stays right after `id`, where the stored resource has it.
    if "meta" in resource and list(resource)[:3] != ["resourceType", "id", "meta"]:
        head = {k: resource[k] for k in ("resourceType", "id", "meta") if k in resource}
        resource = {**head, **{k: v for k, v in resource.items() if k not in head}}
    return resource
