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
            "documentation": "Authentication arrives with the trust services; this build serves "
                             "unauthenticated and binds to loopback by default.",
            "resource": [_resource(registry, t) for t in sorted(RESOURCE_TYPES)],
            "interaction": [{"code": "transaction"}, {"code": "batch"},
                            {"code": "history-system"}],
            "searchParam": _common_params(),
            "operation": [{"name": "validate",
                           "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}],
        }],
    }


@lru_cache(maxsize=1)
def _common_params() -> list[dict]:
    return [
        {"name": "_id", "type": "token", "definition": "http://hl7.org/fhir/SearchParameter/Resource-id"},
        {"name": "_lastUpdated", "type": "date",
         "definition": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"},
    ]


def _resource(registry: SearchParamRegistry, res_type: str) -> dict:
    params = [
        {"name": code, "type": p.type, "definition": p.url}
        for code, p in sorted(registry.for_type(res_type).items())
        if p.type in MODIFIERS and code not in ("_id", "_lastUpdated")
    ]
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
        "searchParam": _common_params() + params,
        "operation": [{"name": "validate",
                       "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}],
    }
