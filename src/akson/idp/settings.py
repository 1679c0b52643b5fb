"""Settings of the built-in identity provider, read once from the environment.

| variable | default | meaning |
|---|---|---|
| `AKSON_IDP_ISSUER` | `<request base URL>/auth` | fixed issuer URL (set it behind a proxy) |
| `AKSON_IDP_KEY_DIR` | beside a SQLite database, else `./var` | signing keys, demo client key |
| `AKSON_IDP_ACCESS_TOKEN_SECONDS` | 300 | access token lifetime (5 min: short, so a |
|  |  | revoked login stops working soon without token introspection) |
| `AKSON_IDP_REFRESH_TOKEN_SECONDS` | 28800 | refresh token lifetime (one working day) |
| `AKSON_IDP_CODE_SECONDS` | 60 | authorization code lifetime (RFC 6749 §4.1.2: short) |
| `AKSON_IDP_SESSION_SECONDS` | 28800 | login session lifetime |
| `AKSON_IDP_AUDIENCES` | (none) | extra accepted `aud`/`resource` values, comma-separated; |
|  |  | the server's own FHIR base `<base>/fhir` is always accepted |
| `AKSON_CLIENTS_FILE` | (none) | JSON file of registered clients (`akson.idp.clients`) |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from akson.config import Settings


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def default_key_dir(database_url: str) -> Path:
    """Where key files live: beside a SQLite database file, else `AKSON_IDP_KEY_DIR` or `./var`
    (the same rule as the page-token secret in `akson.api.fhir.paging`)."""
    explicit = os.environ.get("AKSON_IDP_KEY_DIR")
    if explicit:
        return Path(explicit)
    if database_url.startswith("sqlite:///") and ":memory:" not in database_url:
        return Path(database_url.split(":///", 1)[1]).parent
    return Path("./var")


@dataclass(frozen=True)
class IdpSettings:
    """What an operator can set for the built-in provider (see the module docstring)."""

    key_dir: Path
    issuer: str | None = None
    access_token_seconds: int = 300
    refresh_token_seconds: int = 8 * 3600
    code_seconds: int = 60
    session_seconds: int = 8 * 3600
    audiences: tuple[str, ...] = ()
    clients_file: str | None = None

    @classmethod
    def from_env(cls, settings: Settings) -> IdpSettings:
        audiences = tuple(a.strip() for a in os.environ.get("AKSON_IDP_AUDIENCES", "").split(",")
                          if a.strip())
        return cls(
            key_dir=default_key_dir(settings.database_url),
            issuer=os.environ.get("AKSON_IDP_ISSUER") or None,
            access_token_seconds=_int("AKSON_IDP_ACCESS_TOKEN_SECONDS", cls.access_token_seconds),
            refresh_token_seconds=_int("AKSON_IDP_REFRESH_TOKEN_SECONDS",
                                       cls.refresh_token_seconds),
            code_seconds=_int("AKSON_IDP_CODE_SECONDS", cls.code_seconds),
            session_seconds=_int("AKSON_IDP_SESSION_SECONDS", cls.session_seconds),
            audiences=audiences,
            clients_file=os.environ.get("AKSON_CLIENTS_FILE") or None,
        )
