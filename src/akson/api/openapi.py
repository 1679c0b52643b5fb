"""An OpenAPI 3 description of the FHIR REST surface, for tooling and for fuzzing (schemathesis).

It describes the HTTP shape (paths, parameters, media types, statuses); the FHIR rules themselves
live in the CapabilityStatement at /fhir/metadata.
"""

from __future__ import annotations

from functools import lru_cache

from akson import __version__
from akson.fhir.validation import RESOURCE_TYPES

_OUTCOME = {"description": "OperationOutcome naming what was wrong",
            "content": {"application/fhir+json": {"schema": {"type": "object"}}}}
_RESOURCE = {"content": {"application/fhir+json": {"schema": {
    "type": "object", "required": ["resourceType"],
    "properties": {"resourceType": {"type": "string"}, "id": {"type": "string"}}}}}}
_OK = {"description": "A FHIR resource or Bundle",
       "content": {"application/fhir+json": {"schema": {"type": "object"}}}}


def _param(name: str, where: str = "path", schema: dict | None = None, required: bool | None = None
           ) -> dict:
    return {"name": name, "in": where, "required": where == "path" if required is None else required,
            "schema": schema or {"type": "string"}}


def _responses(*codes: str) -> dict:
    out = {code: _OK for code in codes}
    for code in ("400", "404", "406", "410", "412", "413", "415", "422"):
        out[code] = _OUTCOME
    return out


@lru_cache(maxsize=4)
def openapi_document(server_url: str) -> dict:
    res_type = _param("type", schema={"type": "string", "enum": sorted(RESOURCE_TYPES)})
    res_id = _param("id", schema={"type": "string", "pattern": "^[A-Za-z0-9\\-.]{1,64}$"})
    search_params = [
        _param("_id", "query", required=False), _param("_lastUpdated", "query", required=False),
        _param("_count", "query", {"type": "integer", "minimum": 0}, required=False),
        _param("identifier", "query", required=False), _param("name", "query", required=False),
        _param("family", "query", required=False), _param("subject", "query", required=False),
        _param("date", "query", required=False), _param("code", "query", required=False),
    ]
    body = {"required": True, **_RESOURCE}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Akson FHIR R4 API", "version": __version__,
                 "description": "FHIR R4 (4.0.1) REST. See /fhir/metadata for what is supported."},
        "servers": [{"url": server_url}],
        "paths": {
            "/health": {"get": {"responses": {"200": {"description": "Ready"},
                                              "503": {"description": "Not ready"}}}},
            "/fhir/metadata": {"get": {"summary": "CapabilityStatement", "responses": _responses("200")}},
            "/fhir": {"post": {"summary": "Transaction or batch Bundle", "requestBody": body,
                               "responses": _responses("200")}},
            "/fhir/_history": {"get": {"summary": "System history",
                                       "parameters": [_param("_count", "query", {"type": "integer", "minimum": 0}, required=False)],
                                       "responses": _responses("200")}},
            "/fhir/{type}": {
                "parameters": [res_type],
                "get": {"summary": "Search", "parameters": search_params, "responses": _responses("200")},
                "post": {"summary": "Create", "requestBody": body, "responses": _responses("200", "201")},
            },
            "/fhir/{type}/{id}": {
                "parameters": [res_type, res_id],
                "get": {"summary": "Read", "responses": _responses("200")},
                "put": {"summary": "Update or create", "requestBody": body,
                        "responses": _responses("200", "201")},
                "delete": {"summary": "Delete", "responses": _responses("200", "204")},
                "patch": {"summary": "JSON Patch", "requestBody": {"required": True, "content": {
                    "application/json-patch+json": {"schema": {"type": "array", "items": {"type": "object"}}}}},
                    "responses": _responses("200")},
            },
            "/fhir/{type}/{id}/_history": {"parameters": [res_type, res_id],
                                           "get": {"summary": "Instance history", "responses": _responses("200")}},
            "/fhir/{type}/{id}/_history/{vid}": {
                "parameters": [res_type, res_id, _param("vid")],
                "get": {"summary": "Version read", "responses": _responses("200")}},
            "/fhir/{type}/$validate": {"parameters": [res_type], "post": {
                "summary": "Validate without storing", "requestBody": body, "responses": _responses("200")}},
        },
    }
