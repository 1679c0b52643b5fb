"""The one exception a refused access token or DPoP proof raises, with its RFC 6750/9449 challenge.

A `TokenError` carries a short reason code (never a token, claim value or personal data) and knows
the `WWW-Authenticate` challenge to answer with: RFC 6750 §3 (`Bearer error="invalid_token"`),
RFC 9449 §7.1 (`DPoP error="invalid_dpop_proof"`, `use_dpop_nonce` with a `DPoP-Nonce` header,
§8) and RFC 9470 §3 (`insufficient_user_authentication`). It is a `FhirError` with status 401, so
the API layer turns it into an OperationOutcome without knowing about tokens.
"""

from __future__ import annotations

from akson.fhir.outcome import FhirError

#: Every reason a token or proof is refused. The code is safe to show the client and to log.
REASONS = frozenset({
    "invalid_token",        # malformed, missing required claims, claims of the wrong type
    "expired",              # exp passed (beyond leeway)
    "not_yet_valid",        # nbf or iat in the future (beyond leeway)
    "wrong_audience",       # no `aud` the issuer's configuration accepts
    "wrong_type",           # JOSE `typ` is not at+jwt / JWT
    "unknown_issuer",       # `iss` is not a trusted issuer
    "unknown_key",          # no key of the issuer matches the `kid` (even after a JWKS refresh)
    "bad_signature",        # the signature does not verify with the issuer's key
    "alg_not_allowed",      # `alg` is not on the allow-list for the key type (none, HS*, …)
    "insufficient_user_authentication",  # acr / security_level below the configured minimum
    "dpop_required",        # a DPoP-bound token sent as Bearer, or Bearer when DPoP is required
    "dpop_invalid",         # the DPoP proof is missing, malformed or does not match the request
    "dpop_replay",          # the proof's jti was already used
    "use_dpop_nonce",       # the server requires a (fresh) server-issued nonce in the proof
    "attestation_invalid",  # the tillitsrammeverk attestation is malformed or has unknown codes
    "attestation_has_expired",  # toa older than 60 minutes (tillitsrammeverk)
    "attestation_mismatch",  # the attested practitioner is not the authenticated person
})

#: Algorithms a DPoP challenge advertises (RFC 9449 §7.1 `algs`).
DPOP_ALGS = "ES256 PS256 RS256"


class TokenError(FhirError):
    """An access token or DPoP proof was refused; `reason` is one of `REASONS`.

    `scheme` is the authentication scheme the challenge names (`Bearer` or `DPoP`); `nonce` is a
    fresh server nonce to send in a `DPoP-Nonce` header when `reason == "use_dpop_nonce"`.
    """

    reason: str
    scheme: str
    nonce: str | None

    def __init__(self, reason: str, *, scheme: str = "Bearer", nonce: str | None = None) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown token error reason {reason!r}")
        if reason.startswith("dpop_") or reason == "use_dpop_nonce":
            scheme = "DPoP"
        super().__init__(401, f"The request was not authenticated ({reason})", "login")
        self.reason = reason
        self.scheme = scheme
        self.nonce = nonce

    @property
    def error(self) -> str:
        """The RFC error code of the challenge (RFC 6750 §3.1, RFC 9449 §12.2, RFC 9470 §3)."""
        if self.reason in ("dpop_invalid", "dpop_replay"):
            return "invalid_dpop_proof"
        if self.reason in ("use_dpop_nonce", "insufficient_user_authentication"):
            return self.reason
        return "invalid_token"

    def www_authenticate(self) -> str:
        """The `WWW-Authenticate` header value for the 401 response."""
        params = [f'error="{self.error}"', f'error_description="{self.reason}"']
        if self.scheme == "DPoP":
            params.insert(0, f'algs="{DPOP_ALGS}"')
        return f"{self.scheme} " + ", ".join(params)

    def headers(self) -> dict[str, str]:
        """Every header the 401 response needs: the challenge, and a fresh DPoP nonce if asked."""
        out = {"WWW-Authenticate": self.www_authenticate()}
        if self.nonce:
            out["DPoP-Nonce"] = self.nonce
        return out
