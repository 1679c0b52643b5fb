"""FHIR errors as exceptions, and OperationOutcome construction.

https://hl7.org/fhir/R4/operationoutcome.html — every error the server returns is an
OperationOutcome; raising :class:`FhirError` anywhere below the HTTP layer is how code asks for one.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue: severity, IssueType code, text and FHIRPath locations."""

    diagnostics: str
    code: str = "invalid"
    severity: str = "error"
    expression: tuple[str, ...] = ()

    def to_json(self) -> dict:
        out: dict = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            out["expression"] = list(self.expression)
        return out


@dataclass
class FhirError(Exception):
    """An error that maps to an HTTP status and an OperationOutcome.

    `issues` defaults to one issue built from `diagnostics`, `code` and `expression`.
    """

    status: int
    diagnostics: str
    code: str = "invalid"
    expression: tuple[str, ...] = ()
    issues: list[Issue] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.diagnostics)
        if not self.issues:
            self.issues = [Issue(self.diagnostics, self.code, "error", tuple(self.expression))]

    def outcome(self) -> dict:
        return operation_outcome(self.issues)


def operation_outcome(issues: list[Issue]) -> dict:
    """Build an OperationOutcome resource from issues (at least one issue is required by R4)."""
    if not issues:
        issues = [Issue("All OK", "informational", "information")]
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


def bad_request(diagnostics: str, *, code: str = "invalid", expression: tuple[str, ...] = ()) -> FhirError:
    return FhirError(400, diagnostics, code, expression)


def not_found(diagnostics: str) -> FhirError:
    return FhirError(404, diagnostics, "not-found")


def gone(diagnostics: str) -> FhirError:
    return FhirError(410, diagnostics, "deleted")


def conflict(diagnostics: str, *, status: int = 409) -> FhirError:
    return FhirError(status, diagnostics, "conflict")


def unprocessable(issues: list[Issue]) -> FhirError:
    """422: the resource was understood but violates the rules (R4 http.html#create)."""
    return FhirError(422, issues[0].diagnostics, issues[0].code, issues[0].expression, list(issues))


def where(exc: BaseException) -> str:
    """The code locations of a traceback, without the exception's message or any values: a
    message can quote the data that caused it (a database error echoes the bound value), so this
    is what a log line says about an unexpected error."""
    frames = traceback.extract_tb(exc.__traceback__)
    return " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in frames[::-1])
