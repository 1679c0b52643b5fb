"""The provider's own URLs (issuer, endpoints, FHIR base) and redirect URL building."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit, urlunsplit

from starlette.requests import Request

SMART_CONFIGURATION_PATH = "/fhir/.well-known/smart-configuration"


@dataclass(frozen=True)
class Urls:
    """Every URL the provider names, derived from one origin (or the configured issuer)."""

    issuer: str

    @classmethod
    def of(cls, request: Request, configured_issuer: str | None) -> Urls:
        if configured_issuer:
            return cls(configured_issuer.rstrip("/"))
        # Behind a proxy set AKSON_IDP_ISSUER: the Host header is the client's word.
        return cls(f"{request.url.scheme}://{request.url.netloc}/auth")

    @property
    def origin(self) -> str:
        parts = urlsplit(self.issuer)
        return urlunsplit((parts.scheme, parts.netloc, "", "", ""))

    @property
    def fhir_base(self) -> str:
        return f"{self.origin}/fhir"

    @property
    def authorize(self) -> str:
        return f"{self.issuer}/authorize"

    @property
    def token(self) -> str:
        return f"{self.issuer}/token"

    @property
    def jwks(self) -> str:
        return f"{self.issuer}/jwks"

    @property
    def logout(self) -> str:
        return f"{self.issuer}/logout"


def with_query(url: str, params: dict[str, str | None]) -> str:
    """`url` with `params` (None values left out) added to its query (RFC 6749 §4.1.2)."""
    parts = urlsplit(url)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
