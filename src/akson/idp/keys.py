"""The provider's signing keys: generated once into a 0600 key file, published as a JWKS.

The file `idp-signing-keys.json` in the key directory holds the private keys (PEM, newest first)
and a random salt for pseudonymous subject ids. Signing uses the newest key; `rotate()` adds a
new key and keeps the previous one, so tokens signed before a rotation still verify until they
expire (RFC 7517 §5, `kid` selects the key). The public JWKS is served at `/auth/jwks` and also
written to `idp-jwks.json` beside it, so a resource server can trust the built-in issuer through a
file JWKS without fetching its own URL. Key material is never logged.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from akson.idp.jwk import thumbprint

KEYS_FILE = "idp-signing-keys.json"
JWKS_FILE = "idp-jwks.json"
ALGORITHM = "RS256"
_KEEP = 2  # the current key and the one before it


@dataclass(frozen=True)
class SigningKey:
    """One RSA key pair; `kid` is its RFC 7638 thumbprint."""

    kid: str
    private_key: rsa.RSAPrivateKey
    created: int

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": ALGORITHM}


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically with mode 0600 (a temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _new_key() -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    return SigningKey(thumbprint(jwk), private, int(time.time()))


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode("ascii")


class KeyRing:
    """The signing keys of one key directory (loaded, or generated on first use)."""

    def __init__(self, key_dir: Path) -> None:
        self.key_dir = key_dir
        self._lock = threading.Lock()
        self._keys: list[SigningKey] = []
        self._salt = b""
        self._load_or_create()

    @property
    def path(self) -> Path:
        return self.key_dir / KEYS_FILE

    @property
    def current(self) -> SigningKey:
        return self._keys[0]

    @property
    def keys(self) -> tuple[SigningKey, ...]:
        """Every kept key, newest first."""
        return tuple(self._keys)

    @property
    def subject_salt(self) -> bytes:
        return self._salt

    def jwks(self) -> dict[str, Any]:
        """The public JWKS: every kept key, newest first."""
        return {"keys": [k.public_jwk() for k in self._keys]}

    def rotate(self) -> SigningKey:
        """Make a new current key; the previous one stays published for verification."""
        with self._lock:
            self._keys = [_new_key(), *self._keys][:_KEEP]
            self._save()
            return self._keys[0]

    def _load_or_create(self) -> None:
        with self._lock:
            if not self.path.exists():
                self._keys = [_new_key()]
                self._salt = secrets.token_bytes(32)
                if self._create_exclusive():
                    return
            data = json.loads(self.path.read_text())
            self._salt = bytes.fromhex(data["subject_salt"])
            keys = []
            for item in data["keys"]:
                private = serialization.load_pem_private_key(item["pem"].encode(), password=None)
                assert isinstance(private, rsa.RSAPrivateKey)
                keys.append(SigningKey(item["kid"], private, int(item["created"])))
            self._keys = keys
            self._write_jwks()

    def _create_exclusive(self) -> bool:
        """Publish the generated keys unless another process did first (then load theirs), so
        several workers starting together agree on one key file."""
        tmp = self.path.with_name(f".{KEYS_FILE}.{secrets.token_hex(4)}.tmp")
        write_private(tmp, self._serialise())
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            return False
        finally:
            tmp.unlink()
        self._write_jwks()
        return True

    def _serialise(self) -> bytes:
        data = {"subject_salt": self._salt.hex(),
                "keys": [{"kid": k.kid, "created": k.created, "pem": _pem(k.private_key)}
                         for k in self._keys]}
        return json.dumps(data, indent=1).encode()

    def _save(self) -> None:
        write_private(self.path, self._serialise())
        self._write_jwks()

    def _write_jwks(self) -> None:
        path = self.key_dir / JWKS_FILE
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        tmp.write_text(json.dumps(self.jwks(), indent=1))
        os.replace(tmp, path)
