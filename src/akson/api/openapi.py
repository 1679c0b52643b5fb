"""An OpenAPI 3 description of the FHIR REST surface, for tooling and for fuzzing (schemathesis).

It describes the HTTP shape (paths, parameters, media types, statuses); the FHIR rules themselves
live in the CapabilityStatement at /fhir/metadata.
"""

from __future__ import annotations

from functools import lru_cache

from akson import __version__
from akson.fhir.validation import RESOURCE_TYPES

_FHIR_JSON = "application/fhir+json"
_OUTCOME = {"description": "OperationOutcome naming what was wrong",
            "content": {_FHIR_JSON: {"schema": {
                "type": "object", "required": ["resourceType", "issue"],
                "properties": {"resourceType": {"type": "string", "enum": ["OperationOutcome"]},
                               "issue": {"type": "array", "minItems": 1,
                                         "items": {"type": "object"}}}}}}}
_RESOURCE_SCHEMA = {"type": "object", "required": ["resourceType"],
                    "properties": {"resourceType": {"type": "string"}, "id": {"type": "string"}}}
_OK = {"description": "A FHIR resource, Bundle or OperationOutcome",
       "content": {_FHIR_JSON: {"schema": {"type": "object", "required": ["resourceType"]}}}}
_EMPTY = {"description": "No body"}
#: Error statuses any FHIR interaction may answer, always with an OperationOutcome.
_ERRORS = ("400", "404", "405", "406", "409", "410", "412", "413", "415", "422")


def _param(name: str, where: str = "path", schema: dict | None = None, required: bool | None = None
           ) -> dict:
    return {"name": name, "in": where, "required": where == "path" if required is None else required,
            "schema": schema or {"type": "string"}}


def _query(name: str, schema: dict | None = None) -> dict:
    return _param(name, "query", schema, required=False)


def _header(name: str) -> dict:
    return _param(name, "header", required=False)


def _responses(*codes: str) -> dict:
    out = {code: (_EMPTY if code in ("204", "304") else _OK) for code in codes}
    for code in _ERRORS:
        out[code] = _OUTCOME
    return out


def _body(schema: dict | None = None, *, media: str = _FHIR_JSON) -> dict:
    return {"required": True, "content": {media: {"schema": schema or _RESOURCE_SCHEMA}}}


@lru_cache(maxsize=4)
def openapi_document(server_url: str) -> dict:
    res_type = _param("type", schema={"type": "string", "enum": sorted(RESOURCE_TYPES)})
    res_id = _param("id", schema={"type": "string", "pattern": "^[A-Za-z0-9\\-.]{1,64}$"})
    count = _query("_count", {"type": "integer", "minimum": 0})
    # A sample of search parameters (all of R4's are supported: see /fhir/metadata).
    search_params = [
        _query("_id"), _query("_lastUpdated"), count, _query("_total"), _query("_sort"),
        _query("identifier"), _query("name"), _query("family"), _query("subject"),
        _query("patient"), _query("date"), _query("code"), _query("status"),
    ]
    history_params = [count, _query("_since")]
    prefer = _header("Prefer")
    if_match = _header("If-Match")
    form = {"type": "object", "additionalProperties": {"type": "string"}}
    json_patch = {"type": "array", "items": {"type": "object", "required": ["op", "path"],
                                             "properties": {"op": {"type": "string"},
                                                            "path": {"type": "string"}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Akson FHIR R4 API", "version": __version__,
                 "description": "FHIR R4 (4.0.1) REST. See /fhir/metadata for what is supported."},
        "servers": [{"url": server_url}],
        "paths": {
            "/health": {"get": {"responses": {"200": {"description": "Ready"},
                                              "503": {"description": "Not ready"}}}},
            "/fhir/metadata": {"get": {"summary": "CapabilityStatement",
                                       "responses": _responses("200")}},
            "/fhir": {"post": {"summary": "Transaction or batch Bundle",
                               "parameters": [prefer], "requestBody": _body(),
                               "responses": _responses("200")}},
            "/fhir/_history": {"get": {"summary": "System history", "parameters": history_params,
                                       "responses": _responses("200")}},
            "/fhir/{type}": {
                "parameters": [res_type],
                "get": {"summary": "Search", "parameters": search_params,
                        "responses": _responses("200")},
                "post": {"summary": "Create (conditional with If-None-Exist)",
                         "parameters": [_header("If-None-Exist"), prefer],
                         "requestBody": _body(), "responses": _responses("200", "201")},
                "put": {"summary": "Conditional update (needs search parameters)",
                        "parameters": [*search_params, if_match, prefer], "requestBody": _body(),
                        "responses": _responses("200", "201")},
                "delete": {"summary": "Conditional delete (needs search parameters)",
                           "parameters": search_params, "responses": _responses("200", "204")},
            },
            "/fhir/{type}/_search": {
                "parameters": [res_type],
                "post": {"summary": "Search with a form body", "parameters": search_params,
                         "requestBody": {"required": False, "content": {
                             "application/x-www-form-urlencoded": {"schema": form}}},
                         "responses": _responses("200")},
            },
            "/fhir/{type}/_history": {
                "parameters": [res_type],
                "get": {"summary": "Type history", "parameters": history_params,
                        "responses": _responses("200")},
            },
            "/fhir/{type}/{id}": {
                "parameters": [res_type, res_id],
                "get": {"summary": "Read", "parameters": [_header("If-None-Match")],
                        "responses": _responses("200", "304")},
                "put": {"summary": "Update or create", "parameters": [if_match, prefer],
                        "requestBody": _body(), "responses": _responses("200", "201")},
                "delete": {"summary": "Delete", "responses": _responses("200", "204")},
                "patch": {"summary": "JSON Patch, or FHIRPath Patch (a Parameters resource)",
                          "parameters": [if_match, prefer],
                          "requestBody": {"required": True, "content": {
                              "application/json-patch+json": {"schema": json_patch},
                              _FHIR_JSON: {"schema": _RESOURCE_SCHEMA}}},
                          "responses": _responses("200")},
            },
            "/fhir/{type}/{id}/_history": {
                "parameters": [res_type, res_id],
                "get": {"summary": "Instance history", "parameters": history_params,
                        "responses": _responses("200")}},
            "/fhir/{type}/{id}/_history/{vid}": {
                "parameters": [res_type, res_id, _param("vid")],
                "get": {"summary": "Version read", "responses": _responses("200")}},
            "/fhir/{type}/$validate": {"parameters": [res_type], "post": {
                "summary": "Validate without storing", "requestBody": _body(),
                "responses": _responses("200")}},
            "/fhir/{type}/{id}/$validate": {"parameters": [res_type, res_id], "post": {
                "summary": "Validate an update without storing", "requestBody": _body(),
                "responses": _responses("200")}},
            "/fhir/Patient/{id}/{compartment}": {
                "parameters": [res_id, _param("compartment", schema={
                    "type": "string", "enum": sorted(RESOURCE_TYPES)})],
                "get": {"summary": "Search in the Patient compartment", "parameters": [count],
                        "responses": _responses("200")}},
            "/fhir/Patient/{id}/$everything": {
                "parameters": [res_id],
                "get": {"summary": "Everything in one patient's record",
                        "parameters": [count, _query("_since"), _query("_type")],
                        "responses": _responses("200")}},
            "/fhir/Encounter/{id}/$everything": {
                "parameters": [res_id],
                "get": {"summary": "Everything about one encounter", "parameters": [count],
                        "responses": _responses("200")}},
            "/fhir/$export": {"get": {
                "summary": "Bulk Data system export (asynchronous: Prefer: respond-async)",
                "parameters": [_header("Prefer"), _query("_type"), _query("_since"),
                               _query("_typeFilter"), _query("_outputFormat")],
                "responses": _responses("202")}},
            "/fhir/Patient/$export": {"get": {
                "summary": "Bulk Data export of all patients' records",
                "parameters": [_header("Prefer"), _query("_type"), _query("_since")],
                "responses": _responses("202")}},
            "/fhir/$export-status/{job}": {
                "parameters": [_param("job", schema={"type": "string", "pattern": "^[A-Za-z0-9-]{1,64}$"})],
                "get": {"summary": "Export job status and manifest", "responses": _responses("200", "202")},
                "delete": {"summary": "Cancel an export job", "responses": _responses("202")}},
            **_results_paths(res_id, count),
        },
    }


_RESULT_TYPES = ["DiagnosticReport", "Observation", "ServiceRequest", "Specimen",
                 "ImagingStudy", "PractitionerRole"]
_ANY = {"description": "A receipt (AppRec XML, HL7 v2 ACK or JSON) or an OperationOutcome"}


def _results_paths(res_id: dict, count: dict) -> dict:
    """The results service (docs/results.md): the `/results/fhir` lookup base, delivery and
    the operators' inbox."""
    rtype = _param("type", schema={"type": "string", "enum": _RESULT_TYPES})
    delivery = _param("delivery", schema={"type": "integer", "minimum": 0})
    receipt = {code: _ANY for code in ("200", "202", "400", "403", "404", "409", "415", "422")}
    any_body = {"required": True, "content": {
        media: {"schema": {"type": "string"}} for media in (
            "application/xml", "x-application/hl7-v2+er7", "application/fhir+json")}}
    json_body = {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "properties": {"patient": {"type": "string"},
                                         "reason": {"type": "string"}}}}}}
    return {
        "/results/fhir/{type}": {"parameters": [rtype], "get": {
            "summary": "Search results", "parameters": [
                _query("patient"), _query("code"), _query("date"), _query("_sort"), count],
            "responses": _responses("200")}},
        "/results/fhir/{type}/{id}": {"parameters": [rtype, res_id], "get": {
            "summary": "Read a result", "responses": _responses("200")}},
        "/results/fhir/Patient/{id}/$reservation": {"parameters": [res_id], "post": {
            "summary": "A citizen's reservation against storage of results",
            "requestBody": _body(), "responses": _responses("200")}},
        "/results/ingest": {"post": {
            "summary": "Deliver a result message (KITH Svarrapport, HL7 v2 ORU^R01, Bundle)",
            "requestBody": any_body, "responses": receipt}},
        "/results/messages": {"get": {
            "summary": "The operators' inbox", "parameters": [
                _query("state"), _query("after", {"type": "integer", "minimum": 0})],
            "responses": receipt}},
        "/results/messages/{delivery}": {"parameters": [delivery], "get": {
            "summary": "One delivery and its receipt", "responses": receipt}},
        "/results/messages/{delivery}/$match": {"parameters": [delivery], "post": {
            "summary": "Store an unmatched delivery in a named record",
            "requestBody": json_body, "responses": receipt}},
    }
