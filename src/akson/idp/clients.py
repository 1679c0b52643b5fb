"""The registered OAuth clients: built-in demo clients plus those of `AKSON_CLIENTS_FILE`.

Built in (created on first start; the private key never lives in the repository):

- `akson-web` — a public SMART app (no secret, PKCE), redirect URIs on localhost:3000.
- `akson-cli` — a system client with `system/*.*`, authenticated by `private_key_jwt`; its
  private key is `akson-cli-key.pem` (mode 0600) in the key directory, used by `akson token`.

`AKSON_CLIENTS_FILE` is a JSON document (a client there with a built-in id replaces it):

```json
{"clients": [{
  "client_id": "my-app",                                  // required
  "name": "Min app",
  "token_endpoint_auth_method": "none",                   // none | private_key_jwt |
                                                          // client_secret_basic | client_secret_post
  "grant_types": ["authorization_code", "refresh_token"], // and/or client_credentials
  "redirect_uris": ["https://app.example/callback"],      // exact match (no wildcards)
  "post_logout_redirect_uris": ["https://app.example/"],
  "scope": "openid fhirUser launch/patient offline_access patient/*.rs",  // allowed scopes
  "jwks": {"keys": [...]},                                // public keys, for private_key_jwt
  "jwks_file": "keys/my-app.jwks.json",                   // or: a file holding the JWKS
  "client_secret_hash": "pbkdf2_sha256$600000$<salt hex>$<hash hex>"  // hash_secret(secret)
}]}
```

A requested scope is granted when the client's allowed scopes hold it verbatim, or when it is a
SMART resource scope covered by an allowed one of the same context (`system/*.*` covers
`system/Patient.rs`). Secrets are stored only as PBKDF2-SHA256 hashes (`hash_secret`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from akson.access.scopes import parse_scope
from akson.idp.jwk import is_public, thumbprint

AUTH_METHODS = ("none", "private_key_jwt", "client_secret_basic", "client_secret_post")
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
CLI_CLIENT_ID = "akson-cli"
CLI_KEY_FILE = "akson-cli-key.pem"
WEB_CLIENT_ID = "akson-web"
_PBKDF2_ITERATIONS = 600_000

#: Scopes a user-facing SMART app may ask for (SMART App Launch 2.x, HelseID identity scopes).
USER_APP_SCOPES = (
    "openid", "profile", "fhirUser", "launch/patient", "offline_access", "online_access",
    "patient/*.cruds", "user/*.cruds", "patient/*.*", "user/*.*",
    "helseid://scopes/identity/pid", "helseid://scopes/identity/security_level",
    "helseid://scopes/identity/assurance_level", "helseid://scopes/hpr/hpr_number",
)


class ClientConfigError(ValueError):
    """The clients file is malformed (the message names the client and field, never a secret)."""


@dataclass(frozen=True)
class Client:
    """One registered client (RFC 7591 metadata names)."""

    client_id: str
    name: str = ""
    auth_method: str = "none"  # token_endpoint_auth_method
    grant_types: tuple[str, ...] = ("authorization_code", "refresh_token")
    redirect_uris: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    jwks: dict[str, Any] = field(default_factory=dict)
    client_secret_hash: str | None = None

    @property
    def public(self) -> bool:
        return self.auth_method == "none"

    def grants(self, requested: Iterable[str]) -> bool:
        """True when every requested scope is allowed for this client."""
        return all(scope_allowed(s, self.scopes) for s in requested)

    def key(self, kid: str | None) -> dict[str, Any] | None:
        """The client's public JWK with this `kid` (or its only key when `kid` is absent)."""
        keys = [k for k in self.jwks.get("keys", []) if isinstance(k, dict)]
        if kid is None:
            return keys[0] if len(keys) == 1 else None
        return next((k for k in keys if k.get("kid") == kid), None)

    def secret_matches(self, secret: str) -> bool:
        return self.client_secret_hash is not None and verify_secret(secret,
                                                                     self.client_secret_hash)


def scope_allowed(requested: str, allowed: Iterable[str]) -> bool:
    """`requested` is allowed verbatim, or is a resource scope that an allowed one covers."""
    allowed = list(allowed)
    if requested in allowed:
        return True
    want = parse_scope(requested)
    if want is None:
        return False
    for text in allowed:
        have = parse_scope(text)
        if (have is not None and have.context == want.context and not have.query
                and have.resource_type in ("*", want.resource_type)
                and want.interactions <= have.interactions):
            return True
    return False


def hash_secret(secret: str, *, iterations: int = _PBKDF2_ITERATIONS) -> str:
    """A storable hash of a client secret: `pbkdf2_sha256$<iterations>$<salt>$<hash>`."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}"


def verify_secret(secret: str, stored: str) -> bool:
    """Constant-time check of `secret` against a `hash_secret` value."""
    try:
        scheme, iterations, salt, expected = stored.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), bytes.fromhex(salt),
                                     int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(digest.hex(), expected)


# ------------------------------------------------------------------------------ built-in clients


def cli_private_key(key_dir: Path) -> ec.EllipticCurvePrivateKey:
    """The `akson-cli` private key (EC P-256), generated into `akson-cli-key.pem` (0600) once."""
    path = key_dir / CLI_KEY_FILE
    if not path.exists():
        key_dir.mkdir(parents=True, exist_ok=True)
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        try:  # exclusive: two processes starting together agree on one key
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ClientConfigError(f"{CLI_KEY_FILE} is not an EC private key")
    return key


def public_jwk_of(key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    """The public JWK of an EC private key, with its thumbprint as `kid`."""
    jwk: dict[str, Any] = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": thumbprint(jwk), "use": "sig", "alg": "ES256"}


def builtin_clients(key_dir: Path) -> list[Client]:
    """`akson-web` (public SMART app) and `akson-cli` (system, private_key_jwt)."""
    web_roots = ("http://localhost:3000", "http://127.0.0.1:3000")
    return [
        Client(WEB_CLIENT_ID, "Akson web (demo)", "none",
               ("authorization_code", "refresh_token"),
               tuple(f"{r}/callback" for r in web_roots), tuple(f"{r}/" for r in web_roots),
               USER_APP_SCOPES),
        Client(CLI_CLIENT_ID, "Akson command line", "private_key_jwt", ("client_credentials",),
               scopes=("system/*.*",),
               jwks={"keys": [public_jwk_of(cli_private_key(key_dir))]}),
    ]


def render_builtin_clients(base_url: str = "http://127.0.0.1:8000") -> str:
    """Lines for `akson demo` to print: the built-in clients and how to use them."""
    return "\n".join([
        "Demo clients (built-in identity provider at /auth):",
        f"  {WEB_CLIENT_ID}  public SMART app, PKCE; redirect http://localhost:3000/callback; "
        f"discovery {base_url}/fhir/.well-known/smart-configuration",
        f"  {CLI_CLIENT_ID}  system/*.* with private_key_jwt; `akson token` prints a token",
    ])


# --------------------------------------------------------------------------------- clients file


def _strings(entry: dict[str, Any], name: str, cid: str) -> tuple[str, ...]:
    value = entry.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ClientConfigError(f"client {cid}: {name} must be a list of strings")
    return tuple(value)


def parse_client(entry: Any, base: Path) -> Client:
    """One entry of the clients file (see the module docstring)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("client_id"), str):
        raise ClientConfigError("every client needs a string client_id")
    cid = entry["client_id"]
    method = entry.get("token_endpoint_auth_method", "none")
    if method not in AUTH_METHODS:
        raise ClientConfigError(f"client {cid}: unknown token_endpoint_auth_method")
    grants = _strings(entry, "grant_types", cid) or ("authorization_code",)
    if any(g not in GRANT_TYPES for g in grants):
        raise ClientConfigError(f"client {cid}: unknown grant type")
    if method == "none" and "client_credentials" in grants:
        raise ClientConfigError(f"client {cid}: a public client cannot use client_credentials")
    jwks = entry.get("jwks") or {}
    if entry.get("jwks_file"):
        jwks = json.loads((base / entry["jwks_file"]).read_text())
    if not isinstance(jwks, dict) or not all(isinstance(k, dict) and is_public(k)
                                             for k in jwks.get("keys", [])):
        raise ClientConfigError(f"client {cid}: jwks must hold public keys only")
    if method == "private_key_jwt" and not jwks.get("keys"):
        raise ClientConfigError(f"client {cid}: private_key_jwt needs jwks or jwks_file")
    secret_hash = entry.get("client_secret_hash")
    if method.startswith("client_secret") and not isinstance(secret_hash, str):
        raise ClientConfigError(f"client {cid}: {method} needs client_secret_hash")
    scope = entry.get("scope", "")
    if not isinstance(scope, str):
        raise ClientConfigError(f"client {cid}: scope must be a space-separated string")
    return Client(cid, str(entry.get("name", cid)), method, grants,
                  _strings(entry, "redirect_uris", cid),
                  _strings(entry, "post_logout_redirect_uris", cid), tuple(scope.split()),
                  jwks, secret_hash)


class ClientRegistry:
    """Clients by id: the built-in ones, then those of the clients file (which win)."""

    def __init__(self, clients: Iterable[Client]) -> None:
        self._clients = {c.client_id: c for c in clients}

    @classmethod
    def load(cls, key_dir: Path, clients_file: str | None) -> ClientRegistry:
        clients = builtin_clients(key_dir)
        if clients_file:
            path = Path(clients_file)
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise ClientConfigError(f"cannot read clients file {path.name}") from exc
            if not isinstance(data, dict) or not isinstance(data.get("clients"), list):
                raise ClientConfigError('the clients file must be {"clients": [...]}')
            clients += [parse_client(entry, path.parent) for entry in data["clients"]]
        return cls(clients)

    def get(self, client_id: str | None) -> Client | None:
        return self._clients.get(client_id) if client_id else None
