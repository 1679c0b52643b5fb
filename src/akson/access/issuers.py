"""The token issuers Akson trusts, and where their signing keys (JWKS) come from.

An issuer is trusted by configuration only: its exact `iss` URL, a JWKS source (HTTPS URL, file or
inline), the audiences it may issue tokens for, and a kind hint (`helseid`, `idporten`, `akson`)
that says which claim names to read (DOMAIN.md §3). `AKSON_TRUSTED_ISSUERS` names a JSON file:

    {"issuers": [
      {"issuer": "https://helseid-sts.test.nhn.no", "kind": "helseid",
       "jwks_uri": "https://helseid-sts.test.nhn.no/.well-known/openid-configuration/jwks",
       "audiences": ["nhn:akson"]},
      {"issuer": "https://test.idporten.no", "kind": "idporten",
       "jwks_uri": "https://test.idporten.no/jwks.json", "audiences": ["https://akson.example/fhir"],
       "min_acr": "idporten-loa-high"},
      {"issuer": "http://127.0.0.1:8000/auth", "kind": "akson",
       "jwks_file": "idp-jwks.json", "audiences": ["akson"]}
    ]}

Exactly one of `jwks_uri`, `jwks_file` (relative to the config file) or `jwks` (an inline JWKS
object) per issuer; optional `jwks_ttl_seconds` (default 300) and `min_acr` (citizen issuers). A
bare list instead of the object is accepted too; unknown members are an error. `jwks_uri` must be
https (plain http only to a loopback host, for the built-in provider and tests).

Keys fetched over HTTP are cached for the TTL and fetched again at most once per
`refresh_interval` when a token names an unknown `kid`, so an issuer's key rotation is picked up at
once but a stream of made-up `kid`s cannot make Akson hammer the issuer. A failed fetch keeps the
last good keys. A JWKS file is read again when it changes. Private or symmetric keys in a JWKS are
ignored (and a JWKS holding only such keys verifies nothing).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import httpx

from akson.access.jose import PublicJwk, parse_public_jwk

log = logging.getLogger(__name__)

IssuerKind = Literal["helseid", "idporten", "akson"]
ISSUER_KINDS: tuple[IssuerKind, ...] = ("helseid", "idporten", "akson")
#: A JWKS document larger than this is refused (a JWKS holds a handful of keys).
MAX_JWKS_BYTES = 512 * 1024
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
#: ID-porten `acr` values in increasing assurance (the Level3/Level4 names are the pre-2023 ones).
ACR_RANK = {"idporten-loa-substantial": 3, "Level3": 3, "idporten-loa-high": 4, "Level4": 4}


class IssuerConfigError(ValueError):
    """The trusted-issuer configuration is invalid; the message names the entry and member."""


def parse_jwks(document: Any) -> tuple[PublicJwk, ...]:
    """A JWKS (RFC 7517 §5) → its usable public signing keys; unusable keys are skipped.

    A later key with the `kid` of an earlier one is skipped too: a `kid` must pick one key.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("a JWKS is an object with a `keys` array")
    keys: list[PublicJwk] = []
    seen: set[str] = set()
    for entry in document["keys"]:
        try:
            key = parse_public_jwk(entry)
        except ValueError:
            # Why not fail: JWKS often carry encryption keys or algorithms we do not accept.
            continue
        if key.kid is not None:
            if key.kid in seen:
                continue
            seen.add(key.kid)
        keys.append(key)
    return tuple(keys)


def _fingerprint(keys: Iterable[PublicJwk]) -> list[tuple[str | None, str, str | None]]:
    return [(k.kid, k.thumbprint, k.alg) for k in keys]


class KeySource(Protocol):
    """Where an issuer's public keys come from."""

    def keys(self, now: float) -> tuple[PublicJwk, ...]:
        """The current keys (cached as the source sees fit)."""
        ...

    def refresh(self, now: float) -> bool:
        """Look again because a token named an unknown key; True when the keys may have changed."""
        ...


@dataclass(frozen=True)
class InlineJwks:
    """Keys given in the configuration itself (or built in code, e.g. by the built-in provider)."""

    document: Mapping[str, Any]
    _keys: tuple[PublicJwk, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_keys", parse_jwks(dict(self.document)))

    def keys(self, now: float) -> tuple[PublicJwk, ...]:
        return self._keys

    def refresh(self, now: float) -> bool:
        return False


class CallableJwks:
    """Keys from a function returning the current JWKS — for an in-process provider (the built-in
    `akson.idp` key ring), so its key rotation is seen at once; parsed again only on change."""

    def __init__(self, get: Callable[[], Mapping[str, Any]]) -> None:
        self._get = get
        self._lock = threading.Lock()
        self._seen: str | None = None
        self._keys: tuple[PublicJwk, ...] = ()

    def keys(self, now: float) -> tuple[PublicJwk, ...]:
        document = dict(self._get())
        stamp = json.dumps(document, sort_keys=True)
        with self._lock:
            if stamp != self._seen:
                self._keys, self._seen = parse_jwks(document), stamp
            return self._keys

    def refresh(self, now: float) -> bool:
        return False


class FileJwks:
    """Keys from a JWKS file, read again when the file changes (inode, size or mtime).

    The file's stamp is looked at once per `recheck` seconds, and at once when a token names a
    key id the keys lack (`refresh`: a rotation is seen by the first token signed with the new
    key). A key removed from the file is therefore refused within `recheck` seconds, where a
    JWKS fetched over HTTPS is kept for minutes (`HttpJwks.ttl`); a `stat` on every request had
    been a few per cent of a read's CPU.
    """

    def __init__(self, path: str | os.PathLike[str], *, recheck: float = 1.0) -> None:
        self.path = Path(path)
        self.recheck = recheck
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._checked_at: float | None = None
        self._keys: tuple[PublicJwk, ...] = ()

    def keys(self, now: float) -> tuple[PublicJwk, ...]:
        checked = self._checked_at
        if checked is None or not 0 <= now - checked < self.recheck:
            self._check(now)
        return self._keys

    def refresh(self, now: float) -> bool:
        """Look at the file now (a token named a key id the keys lack); did the keys change?"""
        return self._check(now)

    def _check(self, now: float) -> bool:
        """Read the file again if its stamp changed; whether it did."""
        try:
            st = self.path.stat()
        except OSError:
            log.warning("JWKS file %s cannot be read; keeping the last keys", self.path)
            return False
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            self._checked_at = now
            if stamp == self._stamp:
                return False
            try:
                if st.st_size > MAX_JWKS_BYTES:
                    raise ValueError("JWKS too large")
                self._keys = parse_jwks(json.loads(self.path.read_bytes()))
            except (OSError, ValueError):
                log.warning("JWKS file %s is not a valid JWKS; keeping the last keys", self.path)
            self._stamp = stamp
            return True


Fetch = Callable[[str], bytes]


def _http_fetch(timeout: float) -> Fetch:
    def fetch(url: str) -> bytes:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client, \
                client.stream("GET", url, headers={"Accept": "application/json"}) as resp:
            resp.raise_for_status()
            body = b""
            for chunk in resp.iter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError("JWKS too large")
            return body
    return fetch


def check_jwks_uri(url: str) -> None:
    """`IssuerConfigError` unless `url` is https, or http to a loopback host."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return
    raise IssuerConfigError("jwks_uri must be an https URL (http only to a loopback host)")


class HttpJwks:
    """Keys fetched from a `jwks_uri`: cached `ttl` seconds, refetched on unknown `kid` at most
    once per `refresh_interval` seconds; a failed fetch keeps the last good keys.

    Fetching is synchronous (short timeout): callers on an event loop run verification in a worker
    thread, or accept the rare stall when the cache expires.
    """

    def __init__(self, url: str, *, ttl: float = 300.0, refresh_interval: float = 30.0,
                 timeout: float = 3.0, fetch: Fetch | None = None) -> None:
        check_jwks_uri(url)
        self.url = url
        self.ttl = ttl
        self.refresh_interval = refresh_interval
        self._fetch = fetch or _http_fetch(timeout)
        self._lock = threading.Lock()
        self._keys: tuple[PublicJwk, ...] = ()
        self._fetched_at: float | None = None  # last successful fetch
        self._tried_at: float | None = None  # last attempt, successful or not

    def _load(self, now: float) -> bool:
        self._tried_at = now
        try:
            keys = parse_jwks(json.loads(self._fetch(self.url)))
        except (httpx.HTTPError, ValueError, OSError) as exc:
            log.warning("JWKS fetch from %s failed (%s); keeping the last keys", self.url,
                        type(exc).__name__)
            return False
        changed = _fingerprint(keys) != _fingerprint(self._keys)
        self._keys, self._fetched_at = keys, now
        return changed

    def keys(self, now: float) -> tuple[PublicJwk, ...]:
        with self._lock:
            stale = self._fetched_at is None or now - self._fetched_at >= self.ttl
            recently_tried = self._tried_at is not None and 0 <= now - self._tried_at < self.refresh_interval
            if stale and not recently_tried:
                self._load(now)
            return self._keys

    def refresh(self, now: float) -> bool:
        with self._lock:
            if self._tried_at is not None and 0 <= now - self._tried_at < self.refresh_interval:
                return False
            return self._load(now)


@dataclass(frozen=True)
class TrustedIssuer:
    """One trusted token issuer: exact `iss`, key source, accepted `aud` values and claim kind."""

    issuer: str
    jwks: KeySource
    audiences: frozenset[str]
    kind: IssuerKind = "akson"
    #: Citizens' lowest accepted ID-porten `acr` for this issuer (None: the policy's default).
    min_acr: str | None = None

    def __post_init__(self) -> None:
        if not self.issuer:
            raise IssuerConfigError("issuer must be a non-empty URL")
        if not self.audiences:
            raise IssuerConfigError(f"issuer {self.issuer}: at least one audience is required")
        if self.kind not in ISSUER_KINDS:
            raise IssuerConfigError(f"issuer {self.issuer}: kind must be one of {ISSUER_KINDS}")
        if self.min_acr is not None and self.min_acr not in ACR_RANK:
            raise IssuerConfigError(f"issuer {self.issuer}: min_acr must be one of {sorted(ACR_RANK)}")

    def key_for(self, kid: str | None, alg: str, now: float) -> PublicJwk | None:
        """The key a token with header `kid`/`alg` must verify with, or None.

        Without a `kid` the issuer must have exactly one key that allows `alg`. An unknown `kid`
        makes the source look again once (rate-limited by the source) — that is key rotation.
        """
        found = self._pick(self.jwks.keys(now), kid, alg)
        if found is None and self.jwks.refresh(now):
            found = self._pick(self.jwks.keys(now), kid, alg)
        return found

    @staticmethod
    def _pick(keys: Iterable[PublicJwk], kid: str | None, alg: str) -> PublicJwk | None:
        if kid is not None:
            return next((k for k in keys if k.kid == kid), None)
        fitting = [k for k in keys if k.allows(alg)]
        return fitting[0] if len(fitting) == 1 else None


class TrustedIssuers:
    """The set of trusted issuers, looked up by exact `iss` string."""

    def __init__(self, issuers: Iterable[TrustedIssuer] = ()) -> None:
        self._by_iss: dict[str, TrustedIssuer] = {}
        for issuer in issuers:
            self.add(issuer)

    def add(self, issuer: TrustedIssuer) -> None:
        """Trust one more issuer (e.g. the built-in provider, added by the composition root)."""
        if issuer.issuer in self._by_iss:
            raise IssuerConfigError(f"issuer {issuer.issuer} is configured twice")
        self._by_iss[issuer.issuer] = issuer

    def get(self, iss: str) -> TrustedIssuer | None:
        return self._by_iss.get(iss)

    def __iter__(self) -> Any:
        return iter(self._by_iss.values())

    def __len__(self) -> int:
        return len(self._by_iss)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *,
                  fetch: Fetch | None = None) -> TrustedIssuers:
        """Load the `AKSON_TRUSTED_ISSUERS` JSON file (format in the module docstring)."""
        path = Path(path)
        try:
            document = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise IssuerConfigError(f"{path}: cannot read a JSON document") from exc
        return cls.from_json(document, base_dir=path.parent, fetch=fetch)

    @classmethod
    def from_json(cls, document: Any, *, base_dir: Path = Path("."),
                  fetch: Fetch | None = None) -> TrustedIssuers:
        """Build from the parsed configuration document."""
        entries = document.get("issuers") if isinstance(document, dict) else document
        if isinstance(document, dict) and set(document) - {"issuers"}:
            raise IssuerConfigError("unknown top-level member; expected only `issuers`")
        if not isinstance(entries, list):
            raise IssuerConfigError("expected a list of issuers (or {\"issuers\": [...]})")
        return cls(_issuer_from_json(e, i, base_dir, fetch) for i, e in enumerate(entries))

    @classmethod
    def from_settings(cls, settings: Any) -> TrustedIssuers:
        """The issuers named by `settings.trusted_issuers_file`, or none when it is unset."""
        path = getattr(settings, "trusted_issuers_file", None)
        return cls.from_file(path) if path else cls()


_ENTRY_MEMBERS = {"issuer", "kind", "jwks_uri", "jwks_file", "jwks", "audiences", "jwks_ttl_seconds",
                  "min_acr"}


def _issuer_from_json(entry: Any, index: int, base_dir: Path, fetch: Fetch | None) -> TrustedIssuer:
    where = f"issuers[{index}]"
    if not isinstance(entry, dict):
        raise IssuerConfigError(f"{where}: an issuer is a JSON object")
    unknown = set(entry) - _ENTRY_MEMBERS
    if unknown:
        raise IssuerConfigError(f"{where}: unknown member(s) {sorted(unknown)}")
    issuer = entry.get("issuer")
    if not isinstance(issuer, str) or not issuer:
        raise IssuerConfigError(f"{where}.issuer: a URL string is required")
    audiences = entry.get("audiences")
    if isinstance(audiences, str):
        audiences = [audiences]
    if not (isinstance(audiences, list) and audiences
            and all(isinstance(a, str) and a for a in audiences)):
        raise IssuerConfigError(f"{where}.audiences: a non-empty list of strings is required")
    kind = entry.get("kind", "akson")
    if kind not in ISSUER_KINDS:
        raise IssuerConfigError(f"{where}.kind: one of {list(ISSUER_KINDS)}")
    min_acr = entry.get("min_acr")
    if min_acr is not None and not isinstance(min_acr, str):
        raise IssuerConfigError(f"{where}.min_acr: a string")
    ttl = entry.get("jwks_ttl_seconds", 300)
    if not isinstance(ttl, int | float) or isinstance(ttl, bool) or ttl <= 0:
        raise IssuerConfigError(f"{where}.jwks_ttl_seconds: a positive number")
    sources = [m for m in ("jwks_uri", "jwks_file", "jwks") if m in entry]
    if len(sources) != 1:
        raise IssuerConfigError(f"{where}: exactly one of jwks_uri, jwks_file, jwks is required")
    jwks: KeySource
    try:
        if sources[0] == "jwks_uri":
            if not isinstance(entry["jwks_uri"], str):
                raise IssuerConfigError(f"{where}.jwks_uri: a URL string")
            jwks = HttpJwks(entry["jwks_uri"], ttl=float(ttl), fetch=fetch)
        elif sources[0] == "jwks_file":
            if not isinstance(entry["jwks_file"], str):
                raise IssuerConfigError(f"{where}.jwks_file: a path string")
            jwks = FileJwks(base_dir / entry["jwks_file"])
        else:
            jwks = InlineJwks(entry["jwks"])
    except (IssuerConfigError, ValueError) as exc:
        raise IssuerConfigError(f"{where}: {exc}") from exc
    try:
        return TrustedIssuer(issuer, jwks, frozenset(audiences), kind, min_acr)
    except IssuerConfigError as exc:
        raise IssuerConfigError(f"{where}: {exc}") from exc
