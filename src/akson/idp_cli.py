"""`akson token`: an access token from a running server, through the client-credentials flow.

The command reads the token endpoint from the server's OpenID configuration, authenticates as a
system client with `private_key_jwt` (RFC 7523: a short-lived assertion signed with the client's
private key, `aud` = the token endpoint, a fresh `jti`) and prints the access token, so

    curl -H "Authorization: Bearer $(akson token)" http://127.0.0.1:8000/fhir/Patient

works against `akson serve`. The built-in `akson-cli` client's key is `akson-cli-key.pem` in the
provider's key directory (`akson.idp.settings.default_key_dir`); another client passes
`--key-file`.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import click
import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from akson.config import Settings
from akson.idp.client_auth import JWT_BEARER
from akson.idp.clients import CLI_CLIENT_ID, CLI_KEY_FILE, cli_private_key
from akson.idp.jwk import thumbprint
from akson.idp.settings import default_key_dir

__all__ = ["client_assertion", "fetch_token", "token"]

ASSERTION_SECONDS = 60


def client_assertion(client_id: str, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
                     audience: str, now: int | None = None) -> str:
    """A signed RFC 7523 client assertion: iss = sub = client, aud = token endpoint, 60 s."""
    now = int(time.time()) if now is None else now
    if isinstance(key, ec.EllipticCurvePrivateKey):
        alg, jwk = "ES256", ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        alg, jwk = "RS256", RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    claims = {"iss": client_id, "sub": client_id, "aud": audience, "iat": now,
              "exp": now + ASSERTION_SECONDS, "jti": str(uuid.uuid4())}
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": thumbprint(jwk)})


def fetch_token(url: str, client_id: str, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
                scope: str | None = None, *, http: httpx.Client | None = None) -> dict:
    """The token response of the server at `url` for this client (raises click errors)."""
    own = http is None
    client = http or httpx.Client(timeout=30)
    try:
        meta = client.get(f"{url.rstrip('/')}/auth/.well-known/openid-configuration")
        if meta.status_code != 200:
            raise click.ClickException(f"no OpenID configuration at {url} "
                                       f"(HTTP {meta.status_code})")
        endpoint = meta.json()["token_endpoint"]
        form = {"grant_type": "client_credentials", "client_assertion_type": JWT_BEARER,
                "client_assertion": client_assertion(client_id, key, endpoint)}
        if scope:
            form["scope"] = scope
        response = client.post(endpoint, data=form)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach {url}: {type(exc).__name__}") from None
    finally:
        if own:
            client.close()
    body = response.json()
    if response.status_code != 200:
        raise click.ClickException(f"token request refused: {body.get('error')} "
                                   f"({body.get('error_description', '')})")
    return dict(body)


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise click.ClickException("the key file must hold an EC or RSA private key")
    return key


@click.command("token")
@click.option("--client", "client_id", default=CLI_CLIENT_ID, show_default=True,
              help="client id of a private_key_jwt system client")
@click.option("--scope", default=None, help="scopes to ask for (default: all the client may have)")
@click.option("--url", default="http://127.0.0.1:8000", show_default=True,
              help="base URL of the running Akson server")
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="PEM private key of the client (default: akson-cli's key)")
@click.option("--key-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="the provider's key directory (default: as the server finds it)")
def token(client_id: str, scope: str | None, url: str, key_file: Path | None,
          key_dir: Path | None) -> None:
    """Print an access token obtained with the client-credentials grant."""
    if key_file is not None:
        key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = _load_key(key_file)
    elif client_id == CLI_CLIENT_ID:
        folder = key_dir or default_key_dir(Settings.from_env().database_url)
        if not (folder / CLI_KEY_FILE).exists():  # never mint a key the server does not know
            raise click.ClickException(f"no {CLI_KEY_FILE} in {folder}: start the server once "
                                       "(it creates the key), or pass --key-dir")
        key = cli_private_key(folder)
    else:
        raise click.ClickException("--key-file is needed for a client other than akson-cli")
    click.echo(fetch_token(url, client_id, key, scope)["access_token"])
