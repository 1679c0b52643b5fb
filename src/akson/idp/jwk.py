"""JSON Web Key helpers: RFC 7638 thumbprints, public-only JWKs, and JWK → verification key."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

#: Members that make up the RFC 7638 §3.2 thumbprint input, per key type.
_THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"),
                       "OKP": ("crv", "kty", "x")}
#: Members that only a private key has (RFC 7518 §6.2.2, §6.3.2; RFC 8037 §2).
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
#: Signature algorithms accepted from clients (never `none`, never HS*): the same allow-list as
#: the resource server's (`akson.access.jose`).
ASYMMETRIC_ALGS = ("RS256", "PS256", "ES256")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public JWK, base64url (the DPoP `jkt`, our `kid`).

    Raises ValueError for a key type or member set that has no thumbprint definition.
    """
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None or any(not isinstance(jwk.get(m), str) for m in members):
        raise ValueError("unsupported JWK")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


def is_public(jwk: dict[str, Any]) -> bool:
    return not (PRIVATE_MEMBERS & set(jwk))


def verification_key(jwk: dict[str, Any]) -> Any:
    """The `cryptography` public key of a public JWK; ValueError for private or unknown keys."""
    if not isinstance(jwk, dict) or not is_public(jwk):
        raise ValueError("not a public JWK")
    kty = jwk.get("kty")
    try:
        data = json.dumps(jwk)
        if kty == "RSA":
            return RSAAlgorithm.from_jwk(data)
        if kty == "EC":
            return ECAlgorithm.from_jwk(data)
    except (jwt.InvalidKeyError, ValueError, KeyError, TypeError) as exc:
        raise ValueError("invalid JWK") from exc
    raise ValueError("unsupported JWK")


def algorithm_fits(alg: str, jwk: dict[str, Any]) -> bool:
    """True when `alg` is an allowed asymmetric algorithm for this key type (no key confusion)."""
    kty = jwk.get("kty")
    if alg not in ASYMMETRIC_ALGS:
        return False
    if alg in ("RS256", "PS256"):
        return kty == "RSA"
    return kty == "EC" and jwk.get("crv") == "P-256"
