"""Authentication of FHIR requests: the access token (Bearer or DPoP) → the request's `Principal`.

Every FHIR request but `GET /fhir/metadata` needs a valid access token (the SMART configuration
is served outside the FHIR router and needs none either). The token is verified by
`akson.access.tokens.verify_access_token` against the trusted issuers:

- the issuers of `AKSON_TRUSTED_ISSUERS` (HelseID, ID-porten, …; `akson.access.issuers`);
- the built-in provider (`akson.idp`), trusted through the JWKS file it writes beside its keys
  (`akson.idp.keys.JWKS_FILE`: looked at once a second and whenever a token names a key id it
  lacks, read again only when it changes, so every worker process sees a key rotation). Its
  issuer is `AKSON_IDP_ISSUER` when set, else `<origin>/auth` of the URL the client used — the
  provider names itself the same way, and only its private key can sign for it.

Audience (`aud`): a token of the built-in provider must name this server's FHIR base — the base
the client addressed (`<origin>/fhir`), the base derived from `AKSON_IDP_ISSUER`, `AKSON_AUDIENCE`
or one of `AKSON_IDP_AUDIENCES`. External issuers accept the audiences their configuration lists.

A missing or refused token is a `TokenError` (401 with `WWW-Authenticate`, RFC 6750 §3, RFC 9449
§7.1). Keys of issuers fetched over HTTPS can need a (synchronous) JWKS fetch: their tokens are
verified in a worker thread, so the event loop never waits on the network.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlsplit

from akson.access.dpop import DpopPolicy, DpopRequest
from akson.access.issuers import FileJwks, HttpJwks, KeySource, TrustedIssuer, TrustedIssuers
from akson.access.memo import ByIdentity
from akson.access.principal import Principal
from akson.access.token_error import TokenError
from akson.access.tokens import (
    TokenPolicy,
    claimed_issuer,
    split_authorization,
    verify_access_token,
)
from akson.api.fhir.messages import FhirRequest

#: Distinct request origins whose built-in issuer entry is kept (the Host header is the client's
#: word, so the cache is bounded; past it entries are built per request).
_MAX_ORIGINS = 64


def exempt(req: FhirRequest) -> bool:
    """Requests served without a token: the CapabilityStatement (SMART App Launch §2.1 lets a
    client discover the server before it has a token)."""
    return req.path == ["metadata"] and req.method in ("GET", "HEAD")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class BuiltinIssuer:
    """The built-in provider as a trusted issuer whose `iss` follows the request's origin."""

    def __init__(self, jwks_file: Path, *, issuer: str | None = None,
                 audiences: Iterable[str] = ()) -> None:
        self.jwks: KeySource = FileJwks(jwks_file)
        self.issuer = issuer.rstrip("/") if issuer else None
        self.audiences = tuple(a.rstrip("/") for a in audiences if a)
        self._cache: dict[str, TrustedIssuer] = {}

    def for_base(self, base_url: str) -> TrustedIssuer:
        """The built-in issuer as a client addressing `base_url` (the FHIR base) sees it."""
        base = base_url.rstrip("/")
        found = self._cache.get(base)
        if found is not None:
            return found
        iss = self.issuer or f"{_origin(base)}/auth"
        audiences = frozenset({base, f"{_origin(iss)}/fhir", *self.audiences})
        issuer = TrustedIssuer(iss, self.jwks, audiences, "akson")
        if len(self._cache) < _MAX_ORIGINS:
            self._cache[base] = issuer
        return issuer


class _WithBuiltin(TrustedIssuers):
    """The configured issuers plus the built-in one of this request (a view, built per request)."""

    def __init__(self, configured: TrustedIssuers, builtin: TrustedIssuer | None) -> None:
        super().__init__()
        self._configured = configured
        self._builtin = builtin

    def get(self, iss: str) -> TrustedIssuer | None:
        if self._builtin is not None and iss == self._builtin.issuer:
            return self._builtin
        return self._configured.get(iss)


class Authenticator:
    """Verifies the access token of a FHIR request (see the module docstring)."""

    def __init__(self, issuers: TrustedIssuers, *, builtin: BuiltinIssuer | None,
                 policy: TokenPolicy, dpop: DpopPolicy,
                 clock: Callable[[], float] = time.time) -> None:
        self.issuers = issuers
        self.builtin = builtin
        self.policy = policy
        self.dpop = dpop
        self.clock = clock
        self._views: ByIdentity[TrustedIssuers] = ByIdentity(_MAX_ORIGINS + 1)

    async def authenticate(self, req: FhirRequest) -> Principal:
        """The caller of `req`; `TokenError` (401) when there is no valid token."""
        parts = split_authorization(req.header("authorization"))
        if parts is None:
            raise TokenError("invalid_token", scheme="DPoP" if self.policy.require_dpop
                             else "Bearer")
        scheme, raw = parts
        issuers = self._with(self.builtin.for_base(req.base_url)
                             if self.builtin is not None else None)
        # A Bearer token needs no proof: unbound it passes, bound it is refused (dpop_required),
        # with or without a DpopRequest; only the DPoP scheme has a proof to check.
        dpop = (DpopRequest(scheme, req.header("dpop"), req.method, req.url or req.base_url,
                            self.dpop) if scheme == "DPoP" else None)

        def verify() -> Principal:
            return verify_access_token(raw, issuers=issuers, now=self.clock(), dpop=dpop,
                                       policy=self.policy)

        if self._may_fetch(raw, issuers):
            return await asyncio.to_thread(verify)
        return verify()

    def _with(self, builtin: TrustedIssuer | None) -> TrustedIssuers:
        """The configured issuers plus `builtin`: one view per built-in issuer entry (one per
        origin, `BuiltinIssuer.for_base`), kept instead of built per request."""
        return self._views.get(builtin, lambda: _WithBuiltin(self.issuers, builtin))

    @staticmethod
    def _may_fetch(raw: str, issuers: TrustedIssuers) -> bool:
        """Could verifying this token fetch keys over the network (an HTTPS JWKS issuer)?"""
        iss = claimed_issuer(raw)
        issuer = issuers.get(iss) if isinstance(iss, str) else None
        return issuer is not None and isinstance(issuer.jwks, HttpJwks)
