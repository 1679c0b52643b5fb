"""Access-token verification: a JWT from a trusted issuer → the request's `Principal`.

Checks, in order (RFC 8725 best practices, RFC 9068 JWT access tokens): compact JWS only; `typ`
`at+jwt` or `JWT`; `iss` a trusted issuer (exact match); `alg` on the allow-list for the key type
(RS256, PS256, ES256 — never `none`, never HS*); the key picked by `kid` from the issuer's JWKS;
the signature; `exp` (required), `nbf` and `iat` with a small leeway; an accepted `aud`; then the
claims are mapped (DOMAIN.md §3) and, last, DPoP binding (RFC 9449 §7) is checked, so a proof's
`jti` is only spent by a request that otherwise passes.

Claim mapping by the issuer's kind hint: HelseID `helseid://claims/identity/pid` → practitioner
(with HPR number, orgnr_parent/orgnr_child, security_level ≥ the configured minimum); ID-porten
`pid` → citizen (`acr` at least `idporten-loa-high`, or the configured minimum); neither → a system
client (client credentials: `client_id` and scopes only). The built-in provider (`akson`) may issue
either claim style. A tillitsrammeverk attestation in `authorization_details` becomes
`Principal.care_relationship` (akson.access.attestation).

Every refusal is a `TokenError` with a reason code; no token or claim value is ever put in a
message or a log line.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, cast

from akson.access.attestation import attestation_name, find_attestation, parse_attestation
from akson.access.dpop import DpopRequest, verify_dpop_proof
from akson.access.issuers import ACR_RANK, TrustedIssuer, TrustedIssuers
from akson.access.jose import ALLOWED_ALGS, CompactJws, PublicJwk, split_jws, verify_signature
from akson.access.principal import Kind, Principal
from akson.access.scopes import parse_scopes
from akson.access.token_error import TokenError

HELSEID_PID = "helseid://claims/identity/pid"
HELSEID_SECURITY_LEVEL = "helseid://claims/identity/security_level"
HELSEID_ASSURANCE_LEVEL = "helseid://claims/identity/assurance_level"
HELSEID_HPR_NUMBER = "helseid://claims/hpr/hpr_number"
HELSEID_ORGNR_PARENT = "helseid://claims/client/claims/orgnr_parent"
HELSEID_ORGNR_CHILD = "helseid://claims/client/claims/orgnr_child"

_ALL_ALGS = frozenset().union(*ALLOWED_ALGS.values())
_TYPES = ("at+jwt", "application/at+jwt", "jwt")


@dataclass(frozen=True)
class TokenPolicy:
    """Installation-wide verification settings (from `akson.config.Settings`)."""

    #: Clock skew tolerated for `exp`, `nbf` and `iat`, in seconds.
    leeway_seconds: int = 30
    #: Refuse Bearer tokens: every token must be DPoP-bound (`AKSON_REQUIRE_DPOP`).
    require_dpop: bool = False
    #: Citizens' lowest accepted ID-porten `acr` (an issuer's `min_acr` overrides it).
    citizen_min_acr: str = "idporten-loa-high"
    #: Practitioners' lowest accepted HelseID `security_level` (DOMAIN.md §3: "4").
    practitioner_min_security_level: int = 4

    def __post_init__(self) -> None:
        if self.citizen_min_acr not in ACR_RANK:
            raise ValueError(f"citizen_min_acr must be one of {sorted(ACR_RANK)}")

    @classmethod
    def from_settings(cls, settings: Any) -> TokenPolicy:
        return cls(leeway_seconds=settings.token_leeway_seconds, require_dpop=settings.require_dpop,
                   citizen_min_acr=settings.citizen_min_acr,
                   practitioner_min_security_level=settings.practitioner_min_security_level)


def split_authorization(value: str | None) -> tuple[str, str] | None:
    """An `Authorization` header → (scheme, token) for the `Bearer` (RFC 6750 §2.1) and `DPoP`
    (RFC 9449 §7.1) schemes; None when there is none; `TokenError` when it is malformed."""
    if value is None or not value.strip():
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() not in ("bearer", "dpop") or not token or " " in token or "," in token:
        raise TokenError("invalid_token")
    return ("DPoP" if scheme.lower() == "dpop" else "Bearer"), token


class VerifiedSignatures:
    """Access tokens whose signature this process has verified, by their exact text.

    A client sends the same token with every request until it expires; decoding it and checking
    its RSA/ECDSA signature were a fifth of a read's CPU. A hit skips only that: the token must
    still name a trusted issuer whose current key for it is the very key it was verified with
    (a rotated or removed key means verifying again), and every claim — expiry, audience,
    assurance, DPoP binding and proof — is checked on every request. Bounded; oldest out first.

    An entry also keeps the `Principal` its claims mapped to, for the issuer entry and policy
    it was mapped under: mapping a token without an attestation does not depend on the time,
    so a repeat reuses it (an attestation's 60-minute limit is checked again every time).
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._entries: dict[str, _Verified] = {}

    def get(self, raw: str) -> _Verified | None:
        return self._entries.get(raw)

    def put(self, raw: str, jws: CompactJws, key: PublicJwk) -> _Verified:
        entry = _Verified(jws, key)
        with self._lock:
            if len(self._entries) >= self.size:
                self._entries.pop(next(iter(self._entries)))
            self._entries[raw] = entry
        return entry


@dataclass(slots=True)
class _Verified:
    """A verified token: its parts, the key that verified it, and its mapped principal."""

    jws: CompactJws
    key: PublicJwk
    #: (issuer entry, policy, principal) of the last mapping without an attestation.
    mapped: tuple[TrustedIssuer, TokenPolicy, Principal] | None = None
    #: Set once the token was accepted unbound and without an attestation: what a later use
    #: must still check (`verify_access_token`'s hit path).
    accepted: _Accepted | None = None


@dataclass(frozen=True, slots=True)
class _Accepted:
    """An accepted token's outcome and the checks that depend on the moment: its issuer entry
    and policy must be the same objects, its key still the issuer's, and `now` inside its
    times. Everything else that was checked (type, algorithm, audience, binding, claims) is a
    function of the token's bytes and those objects."""

    issuer: TrustedIssuer
    policy: TokenPolicy
    iss: str
    kid: str | None
    alg: str
    exp: float
    start: float | None  # the later of nbf and iat, when either is given
    principal: Principal

    def holds(self, issuers: TrustedIssuers, policy: TokenPolicy, key: PublicJwk, now: float,
              dpop: DpopRequest | None) -> bool:
        leeway = policy.leeway_seconds
        return (self.policy is policy and issuers.get(self.iss) is self.issuer
                and now < self.exp + leeway  # as `_check_times` tests them
                and (self.start is None or not self.start > now + leeway)
                and (dpop is None or not dpop.uses_dpop_scheme)
                and self.issuer.key_for(self.kid, self.alg, now) is key)


_VERIFIED = VerifiedSignatures()


def claimed_issuer(raw: str) -> object:
    """The `iss` claim of `raw`, unverified (from the verified tokens when seen before, so a
    repeat is not parsed again); None when `raw` is not a readable JWS."""
    seen = _VERIFIED.get(raw)
    try:
        jws = seen.jws if seen is not None else split_jws(raw)
    except TokenError:
        return None  # refused at once by verify_access_token, without any key lookup
    return jws.payload.get("iss")


def verify_access_token(raw: str, *, issuers: TrustedIssuers, now: float,
                        dpop: DpopRequest | None = None,
                        policy: TokenPolicy | None = None) -> Principal:
    """Verify `raw` and return who it authenticates; `TokenError` (401) for any failure.

    `dpop` describes the request (Authorization scheme, `DPoP` header, method, URL); without it a
    DPoP-bound token is refused, since its binding cannot be checked. `now` is Unix seconds.
    `policy` carries the installation's settings (leeway, required DPoP, minimum assurance).
    """
    policy = policy or TokenPolicy()
    seen = _VERIFIED.get(raw)
    if seen is not None and seen.accepted is not None \
            and seen.accepted.holds(issuers, policy, seen.key, now, dpop):
        return seen.accepted.principal
    jws = seen.jws if seen is not None else split_jws(raw)
    typ = jws.header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in _TYPES:
        raise TokenError("wrong_type")
    iss = jws.payload.get("iss")
    issuer = issuers.get(iss) if isinstance(iss, str) else None
    if issuer is None:
        raise TokenError("unknown_issuer")
    alg = jws.header["alg"]
    if alg not in _ALL_ALGS:  # before any key lookup: `none`/HS* must not even trigger a JWKS fetch
        raise TokenError("alg_not_allowed")
    kid = jws.header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise TokenError("invalid_token")
    key = issuer.key_for(kid, alg, now)
    if key is None:
        raise TokenError("unknown_key")
    if seen is None or (seen.key is not key and seen.key != key):  # `is`: no dataclass __eq__
        verify_signature(jws, key)  # the payload parsed above is exactly the signed one
        seen = _VERIFIED.put(raw, jws, key)

    claims = jws.payload
    _check_times(claims, now, policy.leeway_seconds)
    _check_audience(claims, issuer)
    jkt = _binding(claims)
    mapped = seen.mapped
    if mapped is not None and mapped[0] is issuer and (mapped[1] is policy or mapped[1] == policy):
        principal = mapped[2]
    else:
        principal = _principal(claims, issuer, policy, now, jkt)
        if principal.care_relationship is None:
            seen.mapped = (issuer, policy, principal)
    _check_dpop(raw, jkt, dpop, policy, now)
    if jkt is None and principal.care_relationship is None and not policy.require_dpop:
        # A bound token's proof, and an attestation's age, are checked on every use.
        nbf, iat = claims.get("nbf"), claims.get("iat")
        starts = [t for t in (nbf, iat) if t is not None]
        seen.accepted = _Accepted(issuer, policy, str(iss), kid, alg, claims["exp"],
                                  max(starts) if starts else None, principal)
    return principal


def _number(value: Any) -> bool:
    """A JSON number usable as a time: not a boolean, finite (`1e400` parses as infinity)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_times(claims: dict[str, Any], now: float, leeway: int) -> None:
    exp, nbf, iat = claims.get("exp"), claims.get("nbf"), claims.get("iat")
    if not _number(exp) or (nbf is not None and not _number(nbf)) or (iat is not None and not _number(iat)):
        raise TokenError("invalid_token")
    if now >= cast(float, exp) + leeway:
        raise TokenError("expired")
    if (nbf is not None and nbf > now + leeway) or (iat is not None and iat > now + leeway):
        raise TokenError("not_yet_valid")


def _check_audience(claims: dict[str, Any], issuer: TrustedIssuer) -> None:
    aud = claims.get("aud")
    values = [aud] if isinstance(aud, str) else aud
    if not isinstance(values, list) or not all(isinstance(a, str) for a in values):
        raise TokenError("wrong_audience" if aud is None else "invalid_token")
    if not issuer.audiences.intersection(values):
        raise TokenError("wrong_audience")


def _binding(claims: dict[str, Any]) -> str | None:
    """The token's `cnf.jkt` (RFC 9449 §6.1), None when unbound; other bindings are refused."""
    if "cnf" not in claims:
        return None
    cnf = claims["cnf"]
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    if not isinstance(jkt, str) or not jkt:
        # e.g. an mTLS binding (x5t#S256, RFC 8705) Akson cannot check: refuse, never ignore.
        raise TokenError("invalid_token")
    return jkt


def _check_dpop(raw: str, jkt: str | None, dpop: DpopRequest | None, policy: TokenPolicy,
                now: float) -> None:
    dpop_scheme = dpop is not None and dpop.uses_dpop_scheme
    if jkt is None:
        if dpop_scheme:  # RFC 9449 §7.1: the DPoP scheme needs a DPoP-bound token
            raise TokenError("dpop_invalid")
        if policy.require_dpop:
            raise TokenError("dpop_required")
        return
    if dpop is None or not dpop_scheme:  # a bound token sent as Bearer (RFC 9449 §7.2)
        raise TokenError("dpop_required")
    verify_dpop_proof(dpop.proof, method=dpop.method, url=dpop.url, now=now, policy=dpop.policy,
                      access_token=raw, expected_jkt=jkt)


def _str(claims: dict[str, Any], name: str) -> str | None:
    """A string claim or None when absent; any other type is a malformed token."""
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > 1024:
        raise TokenError("invalid_token")
    return value


def _scope_text(value: Any) -> str:
    """`scope` is a space-separated string (RFC 9068 §2.2.3); some issuers send a JSON array."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(s, str) and " " not in s for s in value):
        return " ".join(value)
    raise TokenError("invalid_token")


def _kind(claims: dict[str, Any], issuer: TrustedIssuer) -> tuple[Kind, str | None]:
    """Which kind of caller the token is for, and that person's national id."""
    helseid_pid = _str(claims, HELSEID_PID) if issuer.kind != "idporten" else None
    citizen_pid = _str(claims, "pid") if issuer.kind != "helseid" else None
    if helseid_pid and citizen_pid:
        raise TokenError("invalid_token")  # one token, one person, one role
    if helseid_pid:
        return "practitioner", helseid_pid
    if citizen_pid:
        return "citizen", citizen_pid
    if issuer.kind == "idporten":
        raise TokenError("invalid_token")  # an ID-porten access token always names the citizen
    return "system", None


def _security_level(value: Any) -> int | None:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 3:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _name(claims: dict[str, Any]) -> str | None:
    name = _str(claims, "name")
    if name:
        return name
    parts = [_str(claims, n) for n in ("given_name", "middle_name", "family_name")]
    return " ".join(p for p in parts if p) or None


def _principal(claims: dict[str, Any], issuer: TrustedIssuer, policy: TokenPolicy, now: float,
               jkt: str | None) -> Principal:
    client_id = _str(claims, "client_id") or _str(claims, "azp")
    if client_id is None:
        raise TokenError("invalid_token")
    subject = _str(claims, "sub") or client_id  # client-credentials tokens may have no `sub`
    kind, national_id = _kind(claims, issuer)
    extra: dict[str, str] = {"issuer_kind": issuer.kind}
    security_level: str | None = None
    hpr = parent = child = None
    if kind == "practitioner":
        raw_level = claims.get(HELSEID_SECURITY_LEVEL)
        level = _security_level(raw_level)
        if level is None or level < policy.practitioner_min_security_level:
            raise TokenError("insufficient_user_authentication")
        security_level = str(level)
        hpr = _str(claims, HELSEID_HPR_NUMBER)
        parent = _str(claims, HELSEID_ORGNR_PARENT)
        child = _str(claims, HELSEID_ORGNR_CHILD)
        assurance = _str(claims, HELSEID_ASSURANCE_LEVEL)
        if assurance:
            extra["assurance_level"] = assurance
    elif kind == "citizen":
        acr = claims.get("acr")
        minimum = ACR_RANK[issuer.min_acr or policy.citizen_min_acr]
        if not isinstance(acr, str) or ACR_RANK.get(acr, 0) < minimum:
            raise TokenError("insufficient_user_authentication")
        security_level = acr

    name = _name(claims) if kind != "system" else None
    care = None
    element = find_attestation(claims.get("authorization_details"))
    if element is not None:
        if kind != "practitioner":
            raise TokenError("attestation_mismatch")  # only a practitioner attests
        care = parse_attestation(element, authenticated_pid=national_id, now=now)
        name = name or attestation_name(element)

    jti = claims.get("jti")
    return Principal(
        kind=kind,
        issuer=issuer.issuer,
        subject=subject,
        client_id=client_id,
        scopes=parse_scopes(_scope_text(claims.get("scope"))),
        national_id=national_id,
        name=name,
        hpr_number=hpr,
        orgnr_parent=parent,
        orgnr_child=child,
        security_level=security_level,
        care_relationship=care,
        launch_patient=_str(claims, "patient"),
        token_id=jti if isinstance(jti, str) else None,
        expires_at=int(claims["exp"]),
        dpop_jkt=jkt,
        extra=extra,
    )
