"""$validate: the verdict a write would get, without storing (https://hl7.org/fhir/R4/resource-operation-validate.html)."""

from __future__ import annotations

from akson.access.gate import GuardedSession
from akson.api.fhir.context import FhirContext
from akson.api.fhir.messages import FhirRequest, FhirResponse
from akson.fhir.outcome import FhirError, Issue, operation_outcome
from akson.fhir.validation import validate


async def validate_op(ctx: FhirContext, s: GuardedSession, req: FhirRequest, res_type: str,
                      res_id: str | None = None) -> FhirResponse:
    """Body: the resource, or Parameters with a `resource` part. Always answers an OperationOutcome."""
    body = req.json()
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        parts = [p for p in body.get("parameter") or [] if isinstance(p, dict)]
        resource = next((p.get("resource") for p in parts if p.get("name") == "resource"), None)
        if resource is None:
            raise FhirError(400, "Parameters for $validate need a 'resource' part", "required")
        body = resource
    issues = validate(body, expected_type=res_type)
    if not issues and res_id is not None and isinstance(body, dict) and body.get("id") != res_id:
        issues = [Issue(f"id must be {res_id} to update this resource", "invalid", "error", ("id",))]
    if issues:
        return FhirResponse(422, operation_outcome(issues))
    return FhirResponse(200, operation_outcome([Issue("Validation found no errors",
                                                      "informational", "information")]))
