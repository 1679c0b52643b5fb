"""The request and response an interaction sees: HTTP without the server (like Medplum's FhirRequest).

Transaction and batch Bundle entries become the same FhirRequest as an HTTP call, so every
interaction has one implementation whether it arrives alone or inside a Bundle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from akson.access.principal import Principal
from akson.fhir import jsonio

FHIR_JSON = "application/fhir+json; charset=utf-8"


@dataclass
class FhirRequest:
    """One interaction request. `path` is below the FHIR base, split on `/`, without blanks."""

    method: str
    path: list[str]
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    base_url: str = ""
    parsed_body: Any = None  # set when the resource came from a Bundle entry, not from bytes
    assigned_id: str | None = None  # a transaction pre-assigns ids to urn:uuid entries
    max_json_depth: int = 64
    in_bundle: bool = False
    #: The request URL as the client addressed it, without the query (DPoP `htu`, RFC 9449).
    url: str = ""
    #: Who is asking, from the verified access token (akson.api.auth); None only for the
    #: unauthenticated `metadata`.
    principal: Principal | None = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def json(self) -> Any:
        """The request body parsed (or the entry's resource), without loss of decimal digits."""
        if self.parsed_body is None:
            from akson.fhir.outcome import FhirError

            if not self.body:
                raise FhirError(400, "The request has no body", "required")
            self.parsed_body = jsonio.loads(self.body, max_depth=self.max_json_depth)
        return self.parsed_body

    @property
    def prefer(self) -> dict[str, str]:
        """`Prefer` header tokens, e.g. {'return': 'minimal', 'handling': 'lenient'}."""
        out: dict[str, str] = {}
        for part in (self.headers.get("prefer") or "").split(","):
            key, _, value = part.strip().partition("=")
            if key:
                out[key.strip().lower()] = value.strip().strip('"').lower()
        return out


@dataclass
class FhirResponse:
    """Status, headers and a body that is JSON bytes already, a JSON-able value, or nothing."""

    status: int
    body: bytes | dict | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: The resource as stored, for Bundle entries that embed it (body may be omitted by Prefer).
    resource: bytes | None = None

    def body_bytes(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return jsonio.dumps(self.body)


def http_date(us: int) -> str:
    """An RFC 7231 HTTP-date for Last-Modified."""
    return formatdate(us / 1_000_000, usegmt=True)
