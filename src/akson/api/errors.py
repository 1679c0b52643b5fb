"""The one place that turns exceptions into HTTP responses (always an OperationOutcome)."""

from __future__ import annotations

import logging
import uuid

from akson.api.fhir.messages import FhirResponse
from akson.fhir.outcome import FhirError, Issue, operation_outcome

log = logging.getLogger("akson.api")


def error_response(exc: BaseException) -> FhirResponse:
    """FhirError → its status and outcome; anything else → 500 with a reference, never details.

    The log line carries the exception type and a reference the client also gets; it carries no
    request data, because requests hold personal data.
    """
    if isinstance(exc, FhirError):
        headers = {}
        if exc.status == 405:
            headers["Allow"] = "GET, POST, PUT, PATCH, DELETE, HEAD"
        return FhirResponse(exc.status, exc.outcome(), headers)
    ref = uuid.uuid4().hex[:12]
    log.error("internal error ref=%s type=%s", ref, type(exc).__name__, exc_info=exc)
    return FhirResponse(500, operation_outcome([
        Issue(f"Internal server error (reference {ref})", "exception")
    ]))
