"""Signing keys: generated once into a 0600 file, kept across restarts, rotated without breaking
tokens already issued; and the clients file is checked when it is loaded."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
import pytest

from akson.idp.clients import ClientConfigError, ClientRegistry
from akson.idp.keys import JWKS_FILE, KEYS_FILE, KeyRing
from akson.idp.tokens import Grant, TokenMinter


def _verify(token: str, jwks: dict) -> dict:
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks["keys"] if k["kid"] == kid)
    return dict(jwt.decode(token, jwt.PyJWK(key), algorithms=["RS256"], audience="https://fhir"))


def test_key_file_is_private_and_survives_a_restart(tmp_path: Path):
    ring = KeyRing(tmp_path)
    assert (tmp_path / KEYS_FILE).stat().st_mode & 0o777 == 0o600
    again = KeyRing(tmp_path)
    assert again.current.kid == ring.current.kid
    assert again.subject_salt == ring.subject_salt
    published = json.loads((tmp_path / JWKS_FILE).read_text())
    assert published == ring.jwks() and "d" not in published["keys"][0]


def test_rotation_keeps_the_previous_public_key(tmp_path: Path):
    ring = KeyRing(tmp_path)
    minter = TokenMinter(ring, 300)
    grant = Grant("akson-cli", ("system/*.rs",), "https://fhir")
    before = minter.access_token(grant, issuer="https://idp", now=int(time.time()))
    old_kid = ring.current.kid
    ring.rotate()
    after = minter.access_token(grant, issuer="https://idp", now=int(time.time()))
    jwks = ring.jwks()
    assert [k["kid"] for k in jwks["keys"]] == [ring.current.kid, old_kid]
    assert jwt.get_unverified_header(after)["kid"] == ring.current.kid != old_kid
    assert _verify(before, jwks)["client_id"] == _verify(after, jwks)["client_id"] == "akson-cli"
    assert KeyRing(tmp_path).jwks() == jwks, "the rotation is on disk"
    ring.rotate()
    assert old_kid not in {k["kid"] for k in ring.jwks()["keys"]}, "only one previous key kept"


def test_clients_file_with_private_key_material_is_refused(tmp_path: Path):
    bad = {"clients": [{"client_id": "x", "token_endpoint_auth_method": "private_key_jwt",
                        "grant_types": ["client_credentials"],
                        "jwks": {"keys": [{"kty": "EC", "crv": "P-256", "x": "a", "y": "b",
                                           "d": "secret"}]}}]}
    path = tmp_path / "clients.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ClientConfigError, match="public keys only"):
        ClientRegistry.load(tmp_path, str(path))


def test_clients_file_secret_client_needs_a_hash(tmp_path: Path):
    path = tmp_path / "clients.json"
    path.write_text(json.dumps({"clients": [{"client_id": "x", "grant_types": [
        "client_credentials"], "token_endpoint_auth_method": "client_secret_basic"}]}))
    with pytest.raises(ClientConfigError, match="client_secret_hash"):
        ClientRegistry.load(tmp_path, str(path))
