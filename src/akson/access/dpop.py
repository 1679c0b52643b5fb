"""DPoP proof verification (RFC 9449 §4.3), the jti replay cache and server-issued nonces.

A DPoP proof is a JWT the client signs, per request, with the key its access token is bound to
(`cnf.jkt`). Checked here, in the RFC's order: one well-formed JWT; `typ` `dpop+jwt`; an
asymmetric `alg` on the allow-list; a `jwk` header that is a public key; the signature; `htm` and
`htu` equal to this request (the URL without query and fragment, scheme/host/port normalised,
RFC 9449 §4.3 point 9, RFC 3986 §6.2); a server nonce when one is required (§8, §9); `iat`
within the acceptance window (§11.1); `ath` = base64url SHA-256 of the access token; the key's
RFC 7638 thumbprint equal to the token's `cnf.jkt` (§6.1); and a `jti` not seen before in the
window (§11.1). The replay cache is an interface so several workers can share one store.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import math
import re
import threading
from dataclasses import dataclass
from typing import Any, Protocol, cast
from urllib.parse import unquote, urlsplit, urlunsplit

from akson.access.jose import (
    PublicJwk,
    b64url_decode,
    b64url_encode,
    parse_public_jwk,
    split_jws,
    verify_signature,
)
from akson.access.token_error import TokenError

#: Proof algorithms accepted (RFC 9449 §4.2: asymmetric only); the key type narrows it further.
DPOP_ALGORITHMS = frozenset({"ES256", "PS256", "RS256"})
_MAX_JTI = 256
_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNRESERVED = re.compile(r"%([0-9A-Fa-f]{2})")


class ReplayCache(Protocol):
    """Remembers proof `jti`s while a proof with them could still be accepted."""

    def add(self, key: str, expires_at: float, now: float) -> bool:
        """Record `key` until `expires_at`; False when it is already recorded (a replay).

        Must be atomic: of two concurrent calls with one key, exactly one returns True.
        """
        ...


class MemoryReplayCache:
    """A `ReplayCache` in this process's memory: right for one worker; share a store for more.

    Bounded: when full of unexpired entries it refuses new ones (fails closed) rather than forget
    entries early, which would let a proof be replayed.
    """

    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def add(self, key: str, expires_at: float, now: float) -> bool:
        with self._lock:
            while self._heap and self._heap[0][0] <= now:
                _, old = heapq.heappop(self._heap)
                if self._expiry.get(old, now + 1) <= now:
                    del self._expiry[old]
            known = self._expiry.get(key)
            if known is not None and known > now:
                return False
            if len(self._expiry) >= self.max_entries:
                return False
            self._expiry[key] = expires_at
            heapq.heappush(self._heap, (expires_at, key))
            return True

    def __len__(self) -> int:
        return len(self._expiry)


class DpopNonces:
    """Server-issued DPoP nonces (RFC 9449 §8/§9) without server state.

    A nonce is its time window number and an HMAC of it under `secret`; it is accepted during its
    own window and the next, so every worker holding the same secret accepts every other's nonces.
    """

    def __init__(self, secret: bytes, *, lifetime: int = 300) -> None:
        if len(secret) < 16:
            raise ValueError("the nonce secret must be at least 16 bytes")
        self._secret = secret
        self.lifetime = lifetime

    def _mac(self, window: int) -> bytes:
        msg = b"akson-dpop-nonce:" + window.to_bytes(8, "big", signed=True)
        return hmac.new(self._secret, msg, hashlib.sha256).digest()[:18]

    def issue(self, now: float) -> str:
        """A fresh nonce to send in a `DPoP-Nonce` header."""
        window = int(now // self.lifetime)
        return b64url_encode(window.to_bytes(8, "big", signed=True) + self._mac(window))

    def valid(self, nonce: object, now: float) -> bool:
        """True when `nonce` was issued by a holder of the secret in this window or the last."""
        if not isinstance(nonce, str) or len(nonce) > 64:
            return False
        try:
            raw = b64url_decode(nonce)
        except ValueError:
            return False
        if len(raw) != 26:
            return False
        window = int.from_bytes(raw[:8], "big", signed=True)
        current = int(now // self.lifetime)
        return window in (current, current - 1) and hmac.compare_digest(raw[8:], self._mac(window))


@dataclass(frozen=True)
class DpopPolicy:
    """Server-wide DPoP settings: the replay cache, nonces (None: not required) and time window."""

    replay: ReplayCache
    nonces: DpopNonces | None = None
    #: How old a proof's `iat` may be (RFC 9449 §11.1 suggests seconds to minutes).
    max_age_seconds: int = 60
    #: How far a proof's `iat` may lie in the future (client clock skew).
    leeway_seconds: int = 5


@dataclass(frozen=True)
class DpopRequest:
    """What one request brings for DPoP: the Authorization scheme used, the `DPoP` header (None
    when absent), the method and the full request URL as the client addressed it, and the policy."""

    scheme: str  # "Bearer" or "DPoP" (case-insensitive, RFC 9110 §11.1)
    proof: str | None
    method: str
    url: str
    policy: DpopPolicy

    @property
    def uses_dpop_scheme(self) -> bool:
        return self.scheme.lower() == "dpop"


@dataclass(frozen=True)
class DpopProof:
    """A verified proof: the key thumbprint it was signed with and its jti."""

    jkt: str
    jti: str
    iat: float


def normalize_htu(url: str) -> str:
    """`url` without query or fragment, scheme and host lower-cased, default port dropped, empty
    path as `/`, and percent-encoded unreserved characters decoded (RFC 3986 §6.2.2, §6.2.3)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username or parts.password:
        raise ValueError("not an absolute http(s) URL")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port  # ValueError on a bad port
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"

    def fix(m: re.Match[str]) -> str:
        char = unquote(m.group(0))
        return char if (char.isalnum() and char.isascii()) or char in "-._~" else m.group(0).upper()

    path = _UNRESERVED.sub(fix, parts.path) or "/"
    return urlunsplit((scheme, netloc, path, "", ""))


def access_token_hash(access_token: str) -> str:
    """The `ath` value for `access_token`: base64url SHA-256 of its ASCII bytes (RFC 9449 §4.2)."""
    return b64url_encode(hashlib.sha256(access_token.encode("ascii")).digest())


def _number(value: Any) -> bool:
    """A JSON number usable as a time: not a boolean, finite (`1e400` parses as infinity)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _same(a: str, b: str) -> bool:
    # compare_digest on str raises for non-ASCII text; claim values can be anything.
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def verify_dpop_proof(proof: str | None, *, method: str, url: str, now: float, policy: DpopPolicy,
                      access_token: str | None = None, expected_jkt: str | None = None) -> DpopProof:
    """Verify one DPoP proof for this request (RFC 9449 §4.3); `TokenError` with a dpop_* reason.

    With `access_token` the proof must carry its `ath`; with `expected_jkt` the proof key's
    thumbprint must equal it (the token's `cnf.jkt`). The `jti` is recorded last, so a proof
    refused for any other reason does not use up its `jti`.
    """
    if not proof or "," in proof:  # one proof only (§4.3 point 1): a joined header has a comma
        raise TokenError("dpop_invalid")
    jws = split_jws(proof, reason="dpop_invalid")
    header, claims = jws.header, jws.payload
    if str(header.get("typ", "")).lower() != "dpop+jwt" or header["alg"] not in DPOP_ALGORITHMS:
        raise TokenError("dpop_invalid")
    if "kid" in header or "x5c" in header or "jku" in header:
        raise TokenError("dpop_invalid")  # the key is `jwk`, nothing else (§4.2)
    try:
        key: PublicJwk = parse_public_jwk(header.get("jwk"))
    except ValueError:
        raise TokenError("dpop_invalid") from None
    try:
        verify_signature(jws, key)
    except TokenError:
        raise TokenError("dpop_invalid") from None

    jti, htm, htu, raw_iat = claims.get("jti"), claims.get("htm"), claims.get("htu"), claims.get("iat")
    if not (isinstance(jti, str) and 0 < len(jti) <= _MAX_JTI and isinstance(htm, str)
            and isinstance(htu, str) and _number(raw_iat)):
        raise TokenError("dpop_invalid")
    iat = float(cast(float, raw_iat))
    if htm != method:
        raise TokenError("dpop_invalid")
    try:
        if normalize_htu(htu) != normalize_htu(url):
            raise TokenError("dpop_invalid")
    except ValueError:
        raise TokenError("dpop_invalid") from None
    if policy.nonces is not None and not policy.nonces.valid(claims.get("nonce"), now):
        raise TokenError("use_dpop_nonce", nonce=policy.nonces.issue(now))
    if not (now - policy.max_age_seconds <= iat <= now + policy.leeway_seconds):
        raise TokenError("dpop_invalid")
    if access_token is not None:
        ath = claims.get("ath")
        if not isinstance(ath, str) or not _same(ath, access_token_hash(access_token)):
            raise TokenError("dpop_invalid")
    if expected_jkt is not None and not _same(key.thumbprint, expected_jkt):
        raise TokenError("dpop_invalid")
    # Keep the jti until the proof could no longer pass the iat check anyway.
    replay_key = hashlib.sha256(f"{key.thumbprint}:{jti}".encode()).hexdigest()
    expires_at = iat + policy.max_age_seconds + policy.leeway_seconds
    if not policy.replay.add(replay_key, expires_at, now):
        raise TokenError("dpop_replay")
    return DpopProof(key.thumbprint, jti, iat)


def dpop_policy_from_settings(settings: Any, *, replay: ReplayCache | None = None,
                              nonce_secret: bytes | None = None) -> DpopPolicy:
    """The `DpopPolicy` the settings ask for; nonces need `nonce_secret` (e.g. from the
    installation key) when `settings.dpop_nonce` is on."""
    nonces = None
    if settings.dpop_nonce:
        if nonce_secret is None:
            raise ValueError("AKSON_DPOP_NONCE needs a nonce secret")
        nonces = DpopNonces(nonce_secret)
    return DpopPolicy(replay=replay or MemoryReplayCache(), nonces=nonces,
                      max_age_seconds=settings.dpop_max_age_seconds)
