"""JOSE pieces shared by access-token and DPoP verification: JWKs, algorithm allow-lists, JWS.

Only asymmetric signatures are accepted, and only an algorithm that fits the key's type (RFC 8725
§3.1, §3.2: never `none`, never an HMAC keyed with a public key — "key confusion"). JWK
thumbprints follow RFC 7638. The compact JWS is split and decoded here so every caller rejects the
same malformed input the same way; the signature itself is checked by PyJWT (cryptography).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from akson.access.token_error import TokenError

#: Allowed `alg` values per key type (RFC 7518 §3.1). The only accepted algorithms anywhere.
ALLOWED_ALGS: dict[str, frozenset[str]] = {
    "RSA": frozenset({"RS256", "PS256"}),
    "EC:P-256": frozenset({"ES256"}),
}
#: JWK members that only a private (or symmetric) key has (RFC 7517 §4, RFC 7518 §6).
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
#: RSA keys shorter than this are refused (RFC 7518 §3.3 requires 2048 bits).
MIN_RSA_BITS = 2048
#: A compact JWS longer than this is refused before any parsing (a cheap guard against abuse).
MAX_JWS_BYTES = 16 * 1024


def b64url_decode(text: str) -> bytes:
    """Unpadded base64url (RFC 7515 §2) → bytes; `ValueError` on anything else.

    Non-canonical text (stray bits in the last character) is refused too, so one token has exactly
    one spelling.
    """
    if not text or "=" in text:
        raise ValueError("not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc
    if b64url_encode(data) != text:
        raise ValueError("not canonical base64url")
    return data


def b64url_encode(data: bytes) -> str:
    """Bytes → unpadded base64url (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers disagreeing on which duplicate wins is a classic token-smuggling trick.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError("duplicate member")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259 §6); an `exp` of NaN would never expire.
    raise ValueError("not JSON")


def strict_json_object(data: bytes) -> dict[str, Any]:
    """UTF-8 JSON text that is one object without duplicate member names, or `ValueError`."""
    value = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates,
                       parse_constant=_no_constants)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


@dataclass(frozen=True)
class CompactJws:
    """A compact JWS split into its decoded header and payload (nothing verified yet)."""

    raw: str
    header: dict[str, Any]
    payload: dict[str, Any]


def split_jws(raw: str, *, reason: str = "invalid_token") -> CompactJws:
    """Decode a compact JWS (RFC 7515 §7.1) without verifying it; `TokenError(reason)` if malformed.

    Refuses JWE (five parts), unencoded payloads (`b64: false`, RFC 7797) and any `crit` header,
    since no extension is understood here (RFC 7515 §4.1.11).
    """
    if not isinstance(raw, str) or len(raw) > MAX_JWS_BYTES or not raw.isascii():
        raise TokenError(reason)
    parts = raw.split(".")
    if len(parts) != 3 or not parts[0] or not parts[1]:  # an empty signature fails verification
        raise TokenError(reason)
    try:
        header = strict_json_object(b64url_decode(parts[0]))
        payload = strict_json_object(b64url_decode(parts[1]))
        if parts[2]:
            b64url_decode(parts[2])
    except (ValueError, UnicodeDecodeError):
        raise TokenError(reason) from None
    if "crit" in header or "b64" in header or not isinstance(header.get("alg"), str):
        raise TokenError(reason)
    return CompactJws(raw, header, payload)


@dataclass(frozen=True)
class PublicJwk:
    """One public signing key from a JWKS or a DPoP header, ready to verify with."""

    kty: str  # "RSA" or "EC:P-256": the allow-list key
    kid: str | None
    alg: str | None  # the JWK's own `alg`, if it names one
    key: Any  # a cryptography public key object
    thumbprint: str  # RFC 7638 SHA-256 thumbprint, base64url

    def allows(self, alg: str) -> bool:
        """True when `alg` is on the allow-list for this key (and is the JWK's `alg`, if set)."""
        return alg in ALLOWED_ALGS.get(self.kty, frozenset()) and (self.alg is None or self.alg == alg)


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 §3: SHA-256 over the required members in lexical order, no whitespace."""
    kty = jwk.get("kty")
    members: tuple[str, ...]
    if kty == "RSA":
        members = ("e", "kty", "n")
    elif kty == "EC":
        members = ("crv", "kty", "x", "y")
    elif kty == "OKP":
        members = ("crv", "kty", "x")
    else:
        raise ValueError("unsupported key type")
    if not all(isinstance(jwk.get(m), str) for m in members):
        raise ValueError("incomplete key")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64url_encode(hashlib.sha256(canonical.encode("utf-8")).digest())


def parse_public_jwk(jwk: Any) -> PublicJwk:
    """A JWK dict → `PublicJwk`; `ValueError` for private, symmetric, weak or unsupported keys."""
    if not isinstance(jwk, dict):
        raise ValueError("a JWK is a JSON object")
    if PRIVATE_MEMBERS & jwk.keys():
        raise ValueError("private or symmetric key material")
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise ValueError("not a signing key")
    kid = jwk.get("kid")
    alg = jwk.get("alg")
    if (kid is not None and not isinstance(kid, str)) or (alg is not None and not isinstance(alg, str)):
        raise ValueError("kid and alg are strings")
    kty = jwk.get("kty")
    try:
        if kty == "RSA":
            key: Any = RSAAlgorithm.from_jwk(jwk)
            if key.key_size < MIN_RSA_BITS:
                raise ValueError("RSA key too short")
            kind = "RSA"
        elif kty == "EC" and jwk.get("crv") == "P-256":
            key = ECAlgorithm.from_jwk(jwk)
            kind = "EC:P-256"
        else:
            raise ValueError("unsupported key type")
    except jwt.InvalidKeyError as exc:
        raise ValueError("malformed key") from exc
    if hasattr(key, "private_numbers"):  # belt and braces: from_jwk built a private key
        raise ValueError("private key material")
    return PublicJwk(kind, kid, alg, key, jwk_thumbprint(jwk))


def verify_signature(jws: CompactJws, key: PublicJwk) -> None:
    """Check the JWS signature with `key` under the header's `alg`; `TokenError` if it fails.

    The algorithm must be on the key's allow-list first, so `none` and HS* never reach PyJWT.
    """
    alg = jws.header["alg"]
    if not key.allows(alg):
        raise TokenError("alg_not_allowed")
    try:
        jwt.api_jws.PyJWS().decode_complete(jws.raw, key=key.key, algorithms=[alg])
    except jwt.InvalidSignatureError:
        raise TokenError("bad_signature") from None
    except jwt.PyJWTError:
        raise TokenError("invalid_token") from None
