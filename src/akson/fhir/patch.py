"""PATCH of FHIR resources: JSON Patch or FHIRPath Patch, chosen by content type."""

from __future__ import annotations

from akson.fhir.fhirpatch import apply_fhirpath_patch_operations
from akson.fhir.jsonpatch import apply_json_patch_document
from akson.fhir.outcome import FhirError

JSON_PATCH = "application/json-patch+json"
# application/json+fhir is the pre-R4 FHIR mime type that some clients still send.
FHIR_JSON = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})

__all__ = ["apply_fhirpath_patch", "apply_json_patch", "apply_patch"]


def apply_json_patch(resource: dict, patch: object) -> dict:
    """Apply an RFC 6902 JSON Patch to `resource`; return a new dict (the input is never mutated).

    Atomic: if any operation fails (including a `test`), nothing is applied. FhirError 400 for a
    malformed patch document, 422 (code "processing") when it cannot be applied, or when the
    result is not a JSON object or has a different `resourceType` or `id`.
    """
    result = apply_json_patch_document(resource, patch)
    if not isinstance(result, dict):
        raise FhirError(
            422,
            "the JSON Patch would replace the resource with a non-object value",
            code="processing",
        )
    _check_identity(resource, result)
    return result


def apply_fhirpath_patch(resource: dict, parameters: object) -> dict:
    """Apply a FHIRPath Patch (a `Parameters` resource) to `resource`; return a new dict.

    Atomic and non-mutating like :func:`apply_json_patch`. FhirError 400 for a malformed
    Parameters, 422 (code "processing") when an operation cannot be applied or the result has a
    different `resourceType` or `id`. See :mod:`akson.fhir.fhirpatch` for the exact rules.
    """
    result = apply_fhirpath_patch_operations(resource, parameters)
    _check_identity(resource, result)
    return result


def apply_patch(resource: dict, content_type: str, body: object) -> dict:
    """Apply a PATCH request body to `resource`, choosing the patch format from `content_type`.

    Spec: https://hl7.org/fhir/R4/http.html#patch . The HTTP layer calls this; the result must
    still be validated by the caller.

    `application/json-patch+json` → JSON Patch; `application/fhir+json` or `application/json` with a
    Parameters body → FHIRPath Patch; anything else → FhirError 415. Media-type parameters such as
    `; charset=utf-8` are ignored; a non-UTF-8 charset is a 415.
    """
    media, _, params = (content_type or "").partition(";")
    media = media.strip().lower()
    charset = _charset(params)
    if charset not in (None, "utf-8", "utf8"):
        raise FhirError(
            415, f"unsupported charset {charset!r} for PATCH; use utf-8", code="not-supported"
        )
    if media == JSON_PATCH:
        return apply_json_patch(resource, body)
    if media in FHIR_JSON:
        if isinstance(body, list):
            raise FhirError(
                400,
                f"a JSON array body needs Content-Type {JSON_PATCH}; with {media} the body "
                "must be a Parameters resource (FHIRPath Patch)",
            )
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            found = body.get("resourceType") if isinstance(body, dict) else type(body).__name__
            raise FhirError(
                400, f"a FHIRPath Patch body must be a Parameters resource, not {found!r}"
            )
        return apply_fhirpath_patch(resource, body)
    raise FhirError(
        415,
        f"unsupported PATCH content type {media or '(none)'!r}; use {JSON_PATCH} (JSON Patch) or "
        "application/fhir+json with a Parameters body (FHIRPath Patch)",
        code="not-supported",
    )


def _charset(params: str) -> str | None:
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


def _check_identity(before: dict, after: dict) -> None:
    """A patch may not change which resource it is (http.html#patch: id must match the URL)."""
    for key in ("resourceType", "id"):
        if before.get(key) != after.get(key):
            raise FhirError(
                422,
                f"a patch must not change {key} "
                f"(was {before.get(key)!r}, would become {after.get(key)!r})",
                code="processing",
                expression=(key,),
            )
