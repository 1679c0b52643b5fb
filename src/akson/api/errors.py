"""The one place that turns exceptions into HTTP responses (always an OperationOutcome)."""

from __future__ import annotations

import logging
import traceback
import uuid

from akson.access.token_error import TokenError
from akson.api.fhir.messages import FhirResponse
from akson.fhir.outcome import FhirError, Issue, operation_outcome

log = logging.getLogger("akson.api")


def where(exc: BaseException) -> str:
    """The code locations of a traceback, without the exception's message or any values: a
    message can quote the data that caused it (a database error echoes the bound value)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in frames[::-1])


def error_response(exc: BaseException) -> FhirResponse:
    """FhirError → its status and outcome; anything else → 500 with a reference, never details.

    The log line carries the exception type and a reference the client also gets; it carries no
    request data, because requests hold personal data.
    """
    if isinstance(exc, FhirError):
        headers = {}
        if exc.status == 405:
            headers["Allow"] = "GET, POST, PUT, PATCH, DELETE, HEAD"
        if isinstance(exc, TokenError):
            headers.update(exc.headers())  # WWW-Authenticate (RFC 6750 §3, RFC 9449 §7.1)
        return FhirResponse(exc.status, exc.outcome(), headers)
    ref = uuid.uuid4().hex[:12]
    log.error("internal error ref=%s type=%s at %s", ref, type(exc).__name__, where(exc))
    return FhirResponse(500, operation_outcome([
        Issue(f"Internal server error (reference {ref})", "exception")
    ]))
