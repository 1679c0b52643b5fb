"""Test helpers for token tests: keys made with cryptography, token and DPoP proof minting, a JWKS
server on loopback. Issuers here stand in for HelseID / ID-porten at the outer edge."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from datetime import date
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from akson.access.dpop import access_token_hash
from akson.access.issuers import InlineJwks, TrustedIssuer, TrustedIssuers
from akson.access.jose import b64url_encode, jwk_thumbprint
from akson.access.tokens import (
    HELSEID_HPR_NUMBER,
    HELSEID_ORGNR_CHILD,
    HELSEID_ORGNR_PARENT,
    HELSEID_PID,
    HELSEID_SECURITY_LEVEL,
)
from akson.fhir.identifiers import make_fnr

NOW = 1_800_000_000
HELSEID = "https://helseid-sts.test.nhn.no"
IDPORTEN = "https://test.idporten.no"
AKSON_IDP = "http://127.0.0.1:8000/auth"
AUDIENCE = "nhn:akson"
FHIR_URL = "https://akson.example/fhir/Patient"


def _fnr(day: int) -> str:
    for individ in range(100, 499):
        fnr = make_fnr(date(1975, 3, day), individ, synthetic="tenor")
        if fnr:
            return fnr
    raise AssertionError("no synthetic number")


#: Synthetic national ids (Tenor, month + 80).
PRACTITIONER_FNR = _fnr(14)
CITIZEN_FNR = _fnr(21)
OTHER_FNR = _fnr(9)


@cache
def rsa_key(name: str = "a") -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@cache
def ec_key(name: str = "a") -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_jwk(private: Any, kid: str | None = None, **members: Any) -> dict[str, Any]:
    """The public JWK of a private key, with `kid` and other members added."""
    public = private.public_key()
    algo = RSAAlgorithm if isinstance(public, rsa.RSAPublicKey) else ECAlgorithm
    out: dict[str, Any] = dict(algo.to_jwk(public, as_dict=True))
    if kid:
        out["kid"] = kid
    out.update(members)
    return out


def private_jwk(private: Any) -> dict[str, Any]:
    algo = RSAAlgorithm if isinstance(private, rsa.RSAPrivateKey) else ECAlgorithm
    return dict(algo.to_jwk(private, as_dict=True))


def jwks(*entries: tuple[Any, str]) -> dict[str, Any]:
    return {"keys": [public_jwk(k, kid) for k, kid in entries]}


def issuers(kind: str = "helseid", iss: str = HELSEID, key: Any = None, kid: str = "k1",
            **extra: Any) -> TrustedIssuers:
    """One trusted issuer with an inline JWKS holding `key` (default: RSA key "a")."""
    key = key or rsa_key()
    return TrustedIssuers([TrustedIssuer(iss, InlineJwks(jwks((key, kid))), frozenset({AUDIENCE}),
                                         kind, **extra)])  # type: ignore[arg-type]


def b64json(obj: Any) -> str:
    return b64url_encode(json.dumps(obj).encode())


def mint(claims: dict[str, Any], key: Any = None, *, alg: str = "RS256", kid: str | None = "k1",
         typ: str | None = "at+jwt", headers: dict[str, Any] | None = None) -> str:
    """Sign `claims` as a JWS access token."""
    hdr: dict[str, Any] = {"typ": typ}  # typ None: PyJWT leaves it out
    if kid is not None:
        hdr["kid"] = kid
    hdr.update(headers or {})
    return jwt.encode(claims, key or rsa_key(), algorithm=alg, headers=hdr)


def mint_unsigned_header(header: dict[str, Any], token: str) -> str:
    """`token` with its header replaced (the signature no longer matches)."""
    _, body, sig = token.split(".")
    return f"{b64json(header)}.{body}.{sig}"


def mint_hmac(claims: dict[str, Any], secret: bytes, *, kid: str = "k1") -> str:
    """An HS256 token keyed with `secret` (the key-confusion attack uses the public key)."""
    signing_input = f"{b64json({'alg': 'HS256', 'typ': 'at+jwt', 'kid': kid})}.{b64json(claims)}"
    sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url_encode(sig)}"


def mint_none(claims: dict[str, Any], *, kid: str = "k1") -> str:
    return f"{b64json({'alg': 'none', 'typ': 'at+jwt', 'kid': kid})}.{b64json(claims)}."


def base_claims(iss: str = HELSEID, **over: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": iss, "aud": AUDIENCE, "exp": NOW + 300, "iat": NOW, "nbf": NOW,
        "jti": uuid.uuid4().hex, "client_id": "epj-client", "scope": "openid user/Patient.rs",
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def practitioner_claims(**over: Any) -> dict[str, Any]:
    claims = base_claims(**{
        "sub": "pseudonym-sub-1", HELSEID_PID: PRACTITIONER_FNR, HELSEID_SECURITY_LEVEL: "4",
        HELSEID_HPR_NUMBER: "9144900", HELSEID_ORGNR_PARENT: "974760673",
        HELSEID_ORGNR_CHILD: "974795787", "name": "Lege Legesen",
    })
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def citizen_claims(**over: Any) -> dict[str, Any]:
    claims = base_claims(IDPORTEN, sub="citizen-sub-1", pid=CITIZEN_FNR, acr="idporten-loa-high",
                         client_id="helsenorge")
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def thumbprint(private: Any) -> str:
    return jwk_thumbprint(public_jwk(private))


def proof(key: Any = None, *, htm: str = "GET", htu: str = FHIR_URL, iat: float = NOW,
          jti: str | None = None, token: str | None = None, ath: str | None = None,
          nonce: str | None = None, alg: str = "ES256", typ: str = "dpop+jwt",
          jwk: dict[str, Any] | None = None, extra_header: dict[str, Any] | None = None,
          extra_claims: dict[str, Any] | None = None) -> str:
    """A DPoP proof (RFC 9449 §4.2) signed with `key` (default: EC key "a")."""
    key = key or ec_key()
    claims: dict[str, Any] = {"jti": jti or uuid.uuid4().hex, "htm": htm, "htu": htu, "iat": iat}
    if token is not None:
        claims["ath"] = access_token_hash(token)
    if ath is not None:
        claims["ath"] = ath
    if nonce is not None:
        claims["nonce"] = nonce
    claims.update(extra_claims or {})
    header = {"typ": typ, "jwk": jwk if jwk is not None else public_jwk(key)}
    header.update(extra_header or {})
    return jwt.encode(claims, key, algorithm=alg, headers=header)


class JwksServer:
    """A loopback HTTP server serving a JWKS document that tests can swap; counts fetches."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.fetches = 0
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = json.dumps(outer.document).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks"

    def __enter__(self) -> JwksServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
