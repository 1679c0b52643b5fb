"""Trusted issuers: configuration file, JWKS from HTTP (cache, rotation, rate limit) and files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from akson.access.issuers import (
    FileJwks,
    HttpJwks,
    InlineJwks,
    IssuerConfigError,
    TrustedIssuer,
    TrustedIssuers,
    parse_jwks,
)
from akson.access.token_error import TokenError
from akson.access.tokens import TokenPolicy, verify_access_token
from akson.config import Settings
from tests.access.tokenkit import (
    AKSON_IDP,
    AUDIENCE,
    HELSEID,
    IDPORTEN,
    NOW,
    JwksServer,
    citizen_claims,
    ec_key,
    jwks,
    mint,
    practitioner_claims,
    private_jwk,
    public_jwk,
    rsa_key,
)


def over_http(server: JwksServer, **kw: Any) -> TrustedIssuers:
    return TrustedIssuers([TrustedIssuer(HELSEID, HttpJwks(server.url, **kw), frozenset({AUDIENCE}),
                                         "helseid")])


def verify(token: str, trusted: TrustedIssuers, now: float = NOW):
    return verify_access_token(token, issuers=trusted, now=now,
                               policy=TokenPolicy(leeway_seconds=30))


def reason(token: str, trusted: TrustedIssuers, now: float = NOW) -> str:
    with pytest.raises(TokenError) as info:
        verify(token, trusted, now)
    return info.value.reason


def long_lived(**over: Any) -> dict[str, Any]:
    return practitioner_claims(exp=NOW + 10_000, **over)


# --- HTTP JWKS ----------------------------------------------------------------------------------


def test_http_jwks_is_fetched_once_and_cached_for_the_ttl() -> None:
    with JwksServer(jwks((rsa_key("a"), "a"))) as server:
        trusted = over_http(server, ttl=300)
        for _ in range(5):
            verify(mint(long_lived(), rsa_key("a"), kid="a"), trusted)
        assert server.fetches == 1
        verify(mint(long_lived(), rsa_key("a"), kid="a"), trusted, now=NOW + 301)
        assert server.fetches == 2


def test_key_rotation_is_picked_up_on_an_unknown_kid() -> None:
    with JwksServer(jwks((rsa_key("a"), "a"))) as server:
        trusted = over_http(server, ttl=3600, refresh_interval=30)
        verify(mint(long_lived(), rsa_key("a"), kid="a"), trusted)
        server.document = jwks((rsa_key("b"), "b"))  # the issuer rotates: b replaces a
        p = verify(mint(long_lived(), rsa_key("b"), kid="b"), trusted, now=NOW + 60)
        assert p.kind == "practitioner"
        assert server.fetches == 2
        # The retired key is gone with the refresh.
        assert reason(mint(long_lived(), rsa_key("a"), kid="a"), trusted, now=NOW + 61) == "unknown_key"


def test_unknown_kids_cannot_make_us_hammer_the_issuer() -> None:
    with JwksServer(jwks((rsa_key("a"), "a"))) as server:
        trusted = over_http(server, ttl=3600, refresh_interval=30)
        verify(mint(long_lived(), rsa_key("a"), kid="a"), trusted)
        for i in range(10):
            assert reason(mint(long_lived(), rsa_key("a"), kid=f"made-up-{i}"), trusted,
                          now=NOW + 40 + i) == "unknown_key"
        assert server.fetches == 2  # the first fetch, and one refresh in the 30-second interval
        reason(mint(long_lived(), rsa_key("a"), kid="made-up"), trusted, now=NOW + 80)
        assert server.fetches == 3


def test_a_failed_fetch_keeps_the_last_good_keys() -> None:
    with JwksServer(jwks((rsa_key("a"), "a"))) as server:
        trusted = over_http(server, ttl=60)
        verify(mint(long_lived(), rsa_key("a"), kid="a"), trusted)
        server.status = 500
        assert verify(mint(long_lived(), rsa_key("a"), kid="a"), trusted, now=NOW + 120)
        assert server.fetches == 2


def test_issuer_that_cannot_be_reached_verifies_nothing() -> None:
    with JwksServer(jwks((rsa_key("a"), "a"))) as server:
        url = server.url
    trusted = TrustedIssuers([TrustedIssuer(HELSEID, HttpJwks(url, timeout=1), frozenset({AUDIENCE}),
                                            "helseid")])
    assert reason(mint(long_lived(), rsa_key("a"), kid="a"), trusted) == "unknown_key"


def test_jwks_uri_must_be_https_except_on_loopback() -> None:
    with pytest.raises(IssuerConfigError):
        HttpJwks("http://helseid-sts.test.nhn.no/jwks")
    with pytest.raises(IssuerConfigError):
        HttpJwks("file:///etc/passwd")
    HttpJwks("https://helseid-sts.test.nhn.no/jwks")
    HttpJwks("http://127.0.0.1:8000/auth/jwks")


# --- JWKS files and contents --------------------------------------------------------------------


def write_json(path: Path, document: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document))
    os.replace(tmp, path)


def test_jwks_file_is_read_again_when_a_token_names_a_new_key(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    write_json(path, jwks((rsa_key("a"), "a")))
    trusted = TrustedIssuers([TrustedIssuer(AKSON_IDP, FileJwks(path), frozenset({AUDIENCE}), "akson")])
    token_a = mint(long_lived(iss=AKSON_IDP), rsa_key("a"), kid="a")
    token_b = mint(long_lived(iss=AKSON_IDP), rsa_key("b"), kid="b")
    verify(token_a, trusted)
    assert reason(token_b, trusted) == "unknown_key"
    write_json(path, jwks((rsa_key("b"), "b")))
    assert verify(token_b, trusted)  # at once: its key id was not among the keys
    assert reason(token_a, trusted) == "unknown_key"


def test_a_key_removed_from_the_file_is_refused_within_a_second(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    write_json(path, jwks((rsa_key("a"), "a"), (rsa_key("b"), "b")))
    trusted = TrustedIssuers([TrustedIssuer(AKSON_IDP, FileJwks(path), frozenset({AUDIENCE}), "akson")])
    token_a = mint(long_lived(iss=AKSON_IDP), rsa_key("a"), kid="a")
    assert verify(token_a, trusted)
    write_json(path, jwks((rsa_key("b"), "b")))  # a is withdrawn
    assert verify(token_a, trusted, now=NOW + 0.5)  # the file is looked at once a second
    assert reason(token_a, trusted, now=NOW + 1) == "unknown_key"


def test_broken_jwks_file_keeps_the_last_keys(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    write_json(path, jwks((rsa_key("a"), "a")))
    source = FileJwks(path)
    assert len(source.keys(NOW)) == 1
    path.write_text("{not json")
    assert len(source.keys(NOW + 1)) == 1  # read again, refused: the last keys stay
    path.unlink()
    assert len(source.keys(NOW + 3)) == 1
    assert not source.refresh(NOW + 4)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_private_symmetric_weak_and_foreign_keys_in_a_jwks_are_ignored() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    document = {"keys": [
        private_jwk(rsa_key("a")) | {"kid": "private"},
        {"kty": "oct", "k": "c2VjcmV0c2VjcmV0", "kid": "hmac"},
        public_jwk(weak, "weak"),
        public_jwk(rsa_key("a"), "enc", use="enc"),
        {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "ed"},
        public_jwk(ec_key("a"), "good"),
        public_jwk(ec_key("b"), "good"),  # a second key with the same kid must not shadow the first
        "garbage",
    ]}
    assert [(k.kid, k.kty) for k in parse_jwks(document)] == [("good", "EC:P-256")]
    trusted = TrustedIssuers([TrustedIssuer(HELSEID, InlineJwks(document), frozenset({AUDIENCE}),
                                            "helseid")])
    assert reason(mint(long_lived(), rsa_key("a"), kid="private"), trusted) == "unknown_key"
    assert reason(mint(long_lived(), weak, kid="weak"), trusted) == "unknown_key"
    assert reason(mint(long_lived(), ec_key("b"), alg="ES256", kid="good"), trusted) == "bad_signature"
    assert verify(mint(long_lived(), ec_key("a"), alg="ES256", kid="good"), trusted)


def test_token_without_kid_is_refused_when_the_issuer_has_several_keys() -> None:
    trusted = TrustedIssuers([TrustedIssuer(
        HELSEID, InlineJwks(jwks((rsa_key("a"), "a"), (rsa_key("b"), "b"))), frozenset({AUDIENCE}),
        "helseid")])
    assert reason(mint(long_lived(), rsa_key("a"), kid=None), trusted) == "unknown_key"


# --- the configuration file ---------------------------------------------------------------------


def test_configuration_file_with_every_kind_of_key_source(tmp_path: Path) -> None:
    write_json(tmp_path / "idp-jwks.json", jwks((rsa_key("a"), "idp")))
    with JwksServer(jwks((rsa_key("b"), "hid"))) as server:
        config = {"issuers": [
            {"issuer": HELSEID, "kind": "helseid", "jwks_uri": server.url, "audiences": [AUDIENCE],
             "jwks_ttl_seconds": 60},
            {"issuer": IDPORTEN, "kind": "idporten", "jwks": jwks((ec_key("a"), "idp-c")),
             "audiences": AUDIENCE, "min_acr": "idporten-loa-substantial"},
            {"issuer": AKSON_IDP, "kind": "akson", "jwks_file": "idp-jwks.json", "audiences": [AUDIENCE]},
        ]}
        write_json(tmp_path / "issuers.json", config)
        trusted = TrustedIssuers.from_file(tmp_path / "issuers.json")
        assert len(trusted) == 3
        assert verify(mint(long_lived(), rsa_key("b"), kid="hid"), trusted).issuer == HELSEID
        citizen = mint(citizen_claims(acr="idporten-loa-substantial"), ec_key("a"), alg="ES256", kid="idp-c")
        assert verify(citizen, trusted).kind == "citizen"
        assert verify(mint(long_lived(iss=AKSON_IDP), rsa_key("a"), kid="idp"), trusted).issuer == AKSON_IDP


def test_configuration_may_be_a_bare_list_and_is_found_through_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "issuers.json"
    write_json(path, [{"issuer": HELSEID, "jwks": jwks((rsa_key("a"), "a")), "audiences": [AUDIENCE]}])
    monkeypatch.setenv("AKSON_TRUSTED_ISSUERS", str(path))
    monkeypatch.setenv("AKSON_REQUIRE_DPOP", "true")
    monkeypatch.setenv("AKSON_CITIZEN_MIN_ACR", "idporten-loa-substantial")
    settings = Settings.from_env()
    assert settings.require_dpop and settings.trusted_issuers_file == str(path)
    trusted = TrustedIssuers.from_settings(settings)
    issuer = trusted.get(HELSEID)
    assert issuer is not None and issuer.kind == "akson"  # the default kind
    policy = TokenPolicy.from_settings(settings)
    assert policy.require_dpop and policy.citizen_min_acr == "idporten-loa-substantial"
    assert len(TrustedIssuers.from_settings(Settings())) == 0


@pytest.mark.parametrize(("entry", "message"), [
    ({"issuer": HELSEID, "jwks": {"keys": []}}, "audiences"),
    ({"issuer": HELSEID, "jwks": {"keys": []}, "audiences": []}, "audiences"),
    ({"issuer": HELSEID, "audiences": [AUDIENCE]}, "exactly one"),
    ({"issuer": HELSEID, "audiences": [AUDIENCE], "jwks": {"keys": []}, "jwks_file": "x"}, "exactly one"),
    ({"issuer": HELSEID, "audiences": [AUDIENCE], "jwks_uri": "http://evil.example/jwks"}, "https"),
    ({"issuer": HELSEID, "audiences": [AUDIENCE], "jwks": {"keys": []}, "kind": "bankid"}, "kind"),
    ({"issuer": HELSEID, "audiences": [AUDIENCE], "jwks": {"keys": []}, "trust": "all"}, "unknown"),
    ({"issuer": "", "audiences": [AUDIENCE], "jwks": {"keys": []}}, "issuer"),
    ({"issuer": HELSEID, "audiences": [AUDIENCE], "jwks": []}, "JWKS"),
    ({"issuer": HELSEID, "audiences": [AUDIENCE], "jwks": {"keys": []}, "min_acr": "loa-low"}, "min_acr"),
])
def test_invalid_configuration_is_refused_naming_the_problem(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(IssuerConfigError, match=message):
        TrustedIssuers.from_json({"issuers": [entry]})


def test_an_issuer_configured_twice_is_refused() -> None:
    entry = {"issuer": HELSEID, "audiences": [AUDIENCE], "jwks": {"keys": []}}
    with pytest.raises(IssuerConfigError, match="twice"):
        TrustedIssuers.from_json([entry, entry])


def test_unreadable_configuration_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(IssuerConfigError):
        TrustedIssuers.from_file(tmp_path / "missing.json")


def test_in_process_provider_key_rotation_is_seen_at_once() -> None:
    from akson.access.issuers import CallableJwks
    current = {"doc": jwks((rsa_key("a"), "a"))}
    trusted = TrustedIssuers([TrustedIssuer(AKSON_IDP, CallableJwks(lambda: current["doc"]),
                                            frozenset({AUDIENCE}), "akson")])
    assert verify(mint(long_lived(iss=AKSON_IDP), rsa_key("a"), kid="a"), trusted)
    current["doc"] = jwks((rsa_key("b"), "b"), (rsa_key("a"), "a"))
    assert verify(mint(long_lived(iss=AKSON_IDP), rsa_key("b"), kid="b"), trusted)
    assert verify(mint(long_lived(iss=AKSON_IDP), rsa_key("a"), kid="a"), trusted)
