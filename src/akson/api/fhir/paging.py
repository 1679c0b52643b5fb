"""Opaque, tamper-evident page tokens, so search links never echo search values in clear.

A search's self/next/previous links are `[base]/[path]?_page=<token>` (search.html#paging leaves
the link format to the server). The token carries everything needed to continue — the query
pairs, the keyset cursor and, with `_sort`, the boundary row's sort keys — so no server-side
state is needed and links survive restarts. National ids in a query must not land in proxy or
browser logs, so the token is encrypted and authenticated:

    token = base64url( 0x01 | nonce[16] | ciphertext | tag[16] )
    ciphertext = ("z" zlib(JSON) | "j" JSON) XOR SHAKE-256(k_enc | nonce)
    tag = BLAKE2b-128(key=k_mac; 0x01 | nonce | ciphertext)

A keyed SHAKE-256 keystream with encrypt-then-MAC under keyed BLAKE2b: the `cryptography`
package (AES-GCM) is not installed here, and both primitives are standard-library C code
(~5 µs a token, which every search's links pay). The keys derive
from the installation secret: `AKSON_SECRET_KEY`, else a random key file generated once
(`akson-secret.key` beside a SQLite database, else `AKSON_SECRET_KEY_FILE` or
`./var/akson-secret.key`). Several servers on one PostgreSQL must share `AKSON_SECRET_KEY`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson

from akson.fhir.outcome import FhirError
from akson.store import audit_log

_VERSION = b"\x01"
_NONCE = 16
_TAG = 16
_COMPRESS_FROM = 400
_KEYS: dict[str, tuple[bytes, bytes]] = {}


@dataclass(frozen=True)
class PageState:
    """What a page token holds: the search (as query pairs) and where the page starts."""

    path: str
    pairs: list[tuple[str, str]]
    cursor: int | None
    key: tuple[Any, ...] | None


def count_param(value: str, max_count: int, *, zero: bool = False) -> int:
    """A `_count` value (search.html#count): digits only, capped at `max_count`; 0 only where
    the interaction accepts it (history: "count only")."""
    if not (value.isascii() and value.isdigit()) or (int(value) == 0 and not zero):
        raise FhirError(400, f"_count must be a {'non-negative' if zero else 'positive'} integer")
    return min(int(value), max_count)


def cursor_param(value: str) -> int:
    """A plain `_cursor` this server put in a link (a row number, never more than 18 digits)."""
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise FhirError(400, "_cursor is not a cursor this server issued")
    return int(value)


def keys(database_url: str) -> tuple[bytes, bytes]:
    """(encryption key, MAC key) of this installation (cached per database)."""
    cached = _KEYS.get(database_url)
    if cached is None:
        secret = os.environ.get("AKSON_SECRET_KEY", "").encode() or _key_file(database_url)
        cached = (hmac.new(secret, b"akson page token enc", hashlib.sha256).digest(),
                  hmac.new(secret, b"akson page token mac", hashlib.sha256).digest())
        _KEYS[database_url] = cached
    return cached


def audit_key(database_url: str) -> bytes:
    """The audit log's checkpoint key (akson.store.audit_log): derived from this installation's
    secret, never stored in the database. The server's AuditLog and `akson audit verify` must
    use the same one."""
    return audit_log.checkpoint_key(keys(database_url)[1])


def _key_file(database_url: str) -> bytes:
    if database_url.startswith("sqlite:///") and ":memory:" not in database_url:
        path = Path(database_url.split(":///", 1)[1]).parent / "akson-secret.key"
    else:
        path = Path(os.environ.get("AKSON_SECRET_KEY_FILE", "./var/akson-secret.key"))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # create exclusively, so two processes starting together agree on one key
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as f:
        f.write(os.urandom(32).hex().encode())
    return path.read_bytes()


def _xor_stream(key: bytes, nonce: bytes, data: bytes) -> bytes:
    """`data` XOR a keystream of SHAKE-256(key | nonce): a keyed XOF is a PRF (the sponge has no
    length extension), one C call for any length, unlike HMAC in counter mode."""
    n = len(data)
    stream = hashlib.shake_256(key + nonce).digest(n)
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def _tag(key: bytes, data: bytes) -> bytes:
    """Keyed BLAKE2b: a MAC by design (no HMAC construction needed), truncated to 128 bits."""
    return hashlib.blake2b(data, key=key, digest_size=_TAG).digest()


def encode(keyset: tuple[bytes, bytes], state: PageState) -> str:
    """Seal a PageState into a URL-safe token."""
    enc, mac = keyset
    raw = orjson.dumps({"p": state.path, "q": state.pairs, "c": state.cursor, "k": state.key})
    # zlib costs ~20 µs even on a few bytes and saves nothing there: only long queries.
    plain = b"z" + zlib.compress(raw) if len(raw) > _COMPRESS_FROM else b"j" + raw
    nonce = os.urandom(_NONCE)
    body = _xor_stream(enc, nonce, plain)
    tag = _tag(mac, _VERSION + nonce + body)
    return base64.urlsafe_b64encode(_VERSION + nonce + body + tag).rstrip(b"=").decode()


def decode(keyset: tuple[bytes, bytes], token: str, path: str) -> PageState:
    """Open a token this server issued for `path`; anything else is a 400."""
    enc, mac = keyset
    bad = FhirError(400, "_page is not a page token this server issued for this search")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError:
        raise bad from None
    if len(raw) < 1 + _NONCE + _TAG or raw[:1] != _VERSION:
        raise bad
    nonce, body, tag = raw[1:1 + _NONCE], raw[1 + _NONCE:-_TAG], raw[-_TAG:]
    expected = _tag(mac, _VERSION + nonce + body)
    if not hmac.compare_digest(tag, expected):
        raise bad
    try:
        plain = _xor_stream(enc, nonce, body)
        data = orjson.loads(zlib.decompress(plain[1:]) if plain[:1] == b"z" else plain[1:])
    except (zlib.error, orjson.JSONDecodeError):  # MAC-valid but not ours: a key mix-up
        raise bad from None
    if data["p"] != path:
        raise bad
    key = tuple(data["k"]) if data["k"] is not None else None
    return PageState(data["p"], [(str(k), str(v)) for k, v in data["q"]], data["c"], key)


def search_links(keyset: tuple[bytes, bytes], base_url: str, path: str,
                 pairs: list[tuple[str, str]], cursor: int | None,
                 cursor_key: tuple[Any, ...] | None, page: Any) -> list[dict]:
    """self/next/previous links of a searchset (search.html#paging), values sealed in tokens.

    `pairs` are the search's query pairs (without `_page`), `cursor`/`cursor_key` where this
    page started, `page` the store's Page (its next/previous cursors and keys).
    """
    url = f"{base_url}/{path}"

    def link(relation: str, cur: int | None, key: tuple[Any, ...] | None) -> dict:
        if not pairs and cur is None:
            return {"relation": relation, "url": url}
        token = encode(keyset, PageState(path, pairs, cur, key))
        return {"relation": relation, "url": f"{url}?{urlencode({'_page': token})}"}

    links = [link("self", cursor, cursor_key)]
    if page.next_cursor is not None:
        links.append(link("next", page.next_cursor, page.next_key))
    if page.prev_cursor is not None:
        links.append(link("previous", page.prev_cursor, page.prev_key))
    return links
