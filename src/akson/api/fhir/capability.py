"""The CapabilityStatement: exactly what this server supports (https://hl7.org/fhir/R4/capabilitystatement.html).

Built from the same registry and type list the server uses, so it cannot claim more than is there.
"""

from __future__ import annotations

from functools import lru_cache

from akson import __version__
from akson.fhir.search import MODIFIERS
from akson.fhir.searchparams import SearchParamRegistry
from akson.fhir.validation import RESOURCE_TYPES

_TYPE_INTERACTIONS = ["read", "vread", "update", "patch", "delete", "history-instance",
                      "history-type", "create", "search-type"]


def capability_statement(registry: SearchParamRegistry, base_url: str) -> dict:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-25",
        "publisher": "Akson",
        "kind": "instance",
        "software": {"name": "Akson", "version": __version__},
        "implementation": {"description": "Akson FHIR R4 server", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "documentation": "Every interaction but this CapabilityStatement needs an access "
                             "token (Bearer or DPoP) from a trusted issuer: HelseID, ID-porten "
                             "or the built-in provider under /auth. Access follows one policy "
                             "and every access is audited.",
            "security": _security(base_url),
            "resource": [_resource(registry, t) for t in sorted(RESOURCE_TYPES)],
            "interaction": [{"code": "transaction"}, {"code": "batch"},
                            {"code": "history-system"}],
            "searchParam": _common_params(),
            "operation": [
                _op("validate", "http://hl7.org/fhir/OperationDefinition/Resource-validate"),
                _op("export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"),
            ],
        }],
    }


def _security(base_url: str) -> dict:
    """`rest.security`: SMART on FHIR, with the built-in provider's endpoints as the R4
    `oauth-uris` extension (SMART App Launch 1.0 conformance); discovery proper is
    `.well-known/smart-configuration`."""
    origin = base_url.rsplit("/fhir", 1)[0] if base_url.endswith("/fhir") else base_url
    return {
        "cors": True,
        "service": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
            "code": "SMART-on-FHIR"}]}],
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [{"url": "authorize", "valueUri": f"{origin}/auth/authorize"},
                          {"url": "token", "valueUri": f"{origin}/auth/token"}]}],
    }


def _op(name: str, definition: str) -> dict:
    return {"name": name, "definition": definition}


#: Type-level operations beyond $validate (https://hl7.org/fhir/R4/operationslist.html).
_TYPE_OPERATIONS: dict[str, list[dict]] = {
    "Patient": [
        _op("everything", "http://hl7.org/fhir/OperationDefinition/Patient-everything"),
        _op("export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"),
    ],
    "Encounter": [
        _op("everything", "http://hl7.org/fhir/OperationDefinition/Encounter-everything"),
    ],
    "Group": [
        _op("export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"),
    ],
    "ValueSet": [
        _op("expand", "http://hl7.org/fhir/OperationDefinition/ValueSet-expand"),
    ],
}


@lru_cache(maxsize=1)
def _common_params() -> list[dict]:
    return [
        {"name": "_id", "type": "token", "definition": "http://hl7.org/fhir/SearchParameter/Resource-id"},
        {"name": "_lastUpdated", "type": "date",
         "definition": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"},
        {"name": "_tag", "type": "token", "definition": "http://hl7.org/fhir/SearchParameter/Resource-tag"},
        {"name": "_security", "type": "token",
         "definition": "http://hl7.org/fhir/SearchParameter/Resource-security"},
        {"name": "_profile", "type": "uri",
         "definition": "http://hl7.org/fhir/SearchParameter/Resource-profile"},
    ]


def _resource(registry: SearchParamRegistry, res_type: str) -> dict:
    params = [
        {"name": code, "type": p.type, "definition": p.url}
        for code, p in sorted(registry.for_type(res_type).items())
        if p.type in MODIFIERS and code not in ("_id", "_lastUpdated", "_tag", "_security", "_profile")
    ]
    refs = [f"{res_type}:{code}" for code, p in sorted(registry.for_type(res_type).items())
            if p.type == "reference"]
    return {
        "type": res_type,
        "interaction": [{"code": c} for c in _TYPE_INTERACTIONS],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalRead": "not-supported",
        "conditionalUpdate": True,
        "conditionalDelete": "single",
        "searchInclude": ["*", *refs],
        "searchRevInclude": ["*"],
        "searchParam": _common_params() + params,
        "operation": [
            _op("validate", "http://hl7.org/fhir/OperationDefinition/Resource-validate"),
            *_TYPE_OPERATIONS.get(res_type, []),
        ],
    }
