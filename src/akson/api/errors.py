"""The one place that turns exceptions into HTTP responses (always an OperationOutcome)."""

from __future__ import annotations

import logging
import uuid

from akson.access.token_error import TokenError
from akson.api.fhir.messages import FhirResponse
from akson.fhir.outcome import FhirError, Issue, operation_outcome, where
from akson.store.database import is_retryable

log = logging.getLogger("akson.api")


def error_response(exc: BaseException) -> FhirResponse:
    """FhirError → its status and outcome; a write that lost to a concurrent one → 503 with
    Retry-After; anything else → 500 with a reference, never details.

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
    if is_retryable(exc):
        # A concurrent writer won (a deadlock the database broke, a key it inserted first):
        # the transaction was rolled back whole, and the same request may well succeed now.
        log.info("write lost to a concurrent one: %s", type(exc).__name__)
        return FhirResponse(503, operation_outcome([Issue(
            "A concurrent write conflicted with this one; nothing was saved. Retry the request.",
            "transient")]), {"Retry-After": "1"})
    ref = uuid.uuid4().hex[:12]
    log.error("internal error ref=%s type=%s at %s", ref, type(exc).__name__, where(exc))
    return FhirResponse(500, operation_outcome([
        Issue(f"Internal server error (reference {ref})", "exception")
    ]))
