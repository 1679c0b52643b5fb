"""DPoP (RFC 9449): sender-constrained tokens, proof checks, replay, nonces, required DPoP."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from akson.access.dpop import (
    DpopNonces,
    DpopPolicy,
    DpopRequest,
    MemoryReplayCache,
    normalize_htu,
)
from akson.access.jose import jwk_thumbprint
from akson.access.token_error import TokenError
from akson.access.tokens import TokenPolicy, verify_access_token
from tests.access.tokenkit import (
    FHIR_URL,
    NOW,
    ec_key,
    issuers,
    mint,
    practitioner_claims,
    private_jwk,
    proof,
    public_jwk,
    rsa_key,
    thumbprint,
)

SECRET = b"0123456789abcdef0123456789abcdef"


def bound_token(key: Any = None, **over: Any) -> str:
    return mint(practitioner_claims(cnf={"jkt": thumbprint(key or ec_key())}, **over))


def request(token_proof: str | None, *, scheme: str = "DPoP", method: str = "GET", url: str = FHIR_URL,
            policy: DpopPolicy | None = None) -> DpopRequest:
    return DpopRequest(scheme, token_proof, method, url, policy or DpopPolicy(MemoryReplayCache()))


def verify(token: str, dpop: DpopRequest | None, *, now: float = NOW, policy: TokenPolicy | None = None):
    return verify_access_token(token, issuers=issuers(), now=now, dpop=dpop, policy=policy)


def refused(token: str, dpop: DpopRequest | None, reason: str, **kw: Any) -> TokenError:
    with pytest.raises(TokenError) as info:
        verify(token, dpop, **kw)
    assert info.value.reason == reason
    return info.value


def test_bound_token_with_a_valid_proof_is_accepted() -> None:
    token = bound_token()
    p = verify(token, request(proof(token=token)))
    assert p.dpop_jkt == thumbprint(ec_key())
    assert p.kind == "practitioner"


def test_rsa_proof_keys_work_too() -> None:
    key = rsa_key("client")
    token = bound_token(key)
    assert verify(token, request(proof(key, alg="PS256", token=token)))


def test_replayed_proof_is_refused() -> None:
    token = bound_token()
    dpop = request(proof(token=token))
    verify(token, dpop)
    err = refused(token, dpop, "dpop_replay")
    assert err.www_authenticate().startswith('DPoP algs="ES256 PS256 RS256", error="invalid_dpop_proof"')


def test_proof_refused_for_another_reason_does_not_spend_its_jti() -> None:
    token = bound_token()
    p = proof(token=token)
    policy = DpopPolicy(MemoryReplayCache())
    refused(token, request(p, method="POST", policy=policy), "dpop_invalid")
    assert verify(token, request(p, policy=policy))


def test_concurrent_replays_let_exactly_one_through() -> None:
    token = bound_token()
    dpop = request(proof(token=token))
    results: list[str] = []
    barrier = threading.Barrier(8)

    def attempt() -> None:
        barrier.wait()
        try:
            verify(token, dpop)
            results.append("ok")
        except TokenError as exc:
            results.append(exc.reason)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["dpop_replay"] * 7 + ["ok"]


@pytest.mark.parametrize("method", ["POST", "get", "DELETE"])
def test_proof_for_another_method_is_refused(method: str) -> None:
    token = bound_token()
    refused(token, request(proof(token=token), method=method), "dpop_invalid")


@pytest.mark.parametrize("url", [
    "https://akson.example/fhir/Observation",
    "https://evil.example/fhir/Patient",
    "http://akson.example/fhir/Patient",
    "https://akson.example:8443/fhir/Patient",
])
def test_proof_for_another_url_is_refused(url: str) -> None:
    token = bound_token()
    refused(token, request(proof(token=token), url=url), "dpop_invalid")


@pytest.mark.parametrize("url", [
    "https://AKSON.example:443/fhir/Patient?name=x",
    "https://akson.example/fhir/Patient#frag",
    "https://akson.example/fhir/%50atient",
])
def test_htu_compares_normalised_and_ignores_query_and_fragment(url: str) -> None:
    token = bound_token()
    assert verify(token, request(proof(token=token), url=url))


def test_normalize_htu() -> None:
    assert normalize_htu("HTTPS://Example.COM:443") == "https://example.com/"
    assert normalize_htu("http://example.com:8080/a%7eb%2F?q#f") == "http://example.com:8080/a~b%2F"
    for bad in ("ftp://x/", "/relative", "https://user:pw@example.com/", "https://example.com:99999/"):
        with pytest.raises(ValueError):
            normalize_htu(bad)


def test_proof_for_another_access_token_is_refused() -> None:
    token = bound_token()
    other = bound_token(jti="another")
    refused(token, request(proof(token=other)), "dpop_invalid")
    refused(token, request(proof()), "dpop_invalid")  # no ath at all


def test_non_ascii_ath_or_jkt_is_refused_not_a_crash() -> None:
    token = bound_token()
    refused(token, request(proof(ath="ø" * 43)), "dpop_invalid")
    odd = mint(practitioner_claims(cnf={"jkt": "ø" * 43}))
    refused(odd, request(proof(token=odd)), "dpop_invalid")


def test_proof_signed_by_a_key_the_token_is_not_bound_to_is_refused() -> None:
    token = bound_token()
    refused(token, request(proof(ec_key("thief"), token=token)), "dpop_invalid")


def test_proof_carrying_its_private_key_is_refused() -> None:
    token = bound_token()
    leaky = private_jwk(ec_key())
    refused(token, request(proof(token=token, jwk=leaky)), "dpop_invalid")


@pytest.mark.parametrize("change", [
    {"typ": "JWT"},
    {"alg": "HS256"},
    {"jwk": None},
    {"kid": "k1"},
    {"extra_claims": {"htm": None}},
    {"extra_claims": {"jti": ""}},
    {"extra_claims": {"iat": "now"}},
])
def test_malformed_proofs_are_refused(change: dict[str, Any]) -> None:
    token = bound_token()
    kwargs: dict[str, Any] = {"token": token}
    if change.get("alg") == "HS256":
        import jwt
        p = jwt.encode({"jti": "j", "htm": "GET", "htu": FHIR_URL, "iat": NOW}, SECRET, algorithm="HS256",
                       headers={"typ": "dpop+jwt", "jwk": {"kty": "oct", "k": "c2VjcmV0"}})
    elif "jwk" in change:
        import jwt
        p = jwt.encode({"jti": "j", "htm": "GET", "htu": FHIR_URL, "iat": NOW}, ec_key(), algorithm="ES256",
                       headers={"typ": "dpop+jwt"})
    elif "kid" in change:
        p = proof(extra_header={"kid": "k1"}, **kwargs)
    elif "typ" in change:
        p = proof(typ=change["typ"], **kwargs)
    else:
        claims = {k: v for k, v in change["extra_claims"].items()}
        p = proof(extra_claims=claims, **kwargs)
    refused(token, request(p), "dpop_invalid")


def test_proof_with_a_tampered_signature_is_refused() -> None:
    token = bound_token()
    head, body, _ = proof(token=token).split(".")
    _, _, other_sig = proof(token=token).split(".")
    refused(token, request(f"{head}.{body}.{other_sig}"), "dpop_invalid")


@pytest.mark.parametrize("iat", [NOW - 61, NOW + 6])
def test_proof_outside_the_time_window_is_refused(iat: int) -> None:
    token = bound_token()
    refused(token, request(proof(token=token, iat=iat)), "dpop_invalid")


def test_bound_token_sent_as_bearer_is_refused() -> None:
    token = bound_token()
    refused(token, request(proof(token=token), scheme="Bearer"), "dpop_required")
    err = refused(token, None, "dpop_required")
    assert err.scheme == "DPoP"


def test_dpop_scheme_without_a_proof_is_refused() -> None:
    token = bound_token()
    refused(token, request(None), "dpop_invalid")
    refused(token, request(proof(token=token) + "," + proof(token=token)), "dpop_invalid")


def test_dpop_scheme_with_an_unbound_token_is_refused() -> None:
    token = mint(practitioner_claims())
    refused(token, request(proof(token=token)), "dpop_invalid")


def test_bearer_is_refused_when_dpop_is_required() -> None:
    token = mint(practitioner_claims())
    assert verify(token, request(None, scheme="Bearer"))  # allowed by default
    strict = TokenPolicy(require_dpop=True)
    err = refused(token, request(None, scheme="Bearer"), "dpop_required", policy=strict)
    assert err.www_authenticate().startswith("DPoP ")
    refused(token, None, "dpop_required", policy=strict)
    bound = bound_token()
    assert verify(bound, request(proof(token=bound)), policy=strict)


def test_token_bound_some_other_way_is_refused() -> None:
    token = mint(practitioner_claims(cnf={"x5t#S256": "abc"}))
    refused(token, request(None, scheme="Bearer"), "invalid_token")


def test_server_nonce_is_demanded_and_then_accepted() -> None:
    nonces = DpopNonces(SECRET)
    policy = DpopPolicy(MemoryReplayCache(), nonces=nonces)
    token = bound_token()
    err = refused(token, request(proof(token=token), policy=policy), "use_dpop_nonce")
    assert err.nonce and err.headers()["DPoP-Nonce"] == err.nonce
    assert err.www_authenticate().startswith('DPoP algs="ES256 PS256 RS256", error="use_dpop_nonce"')
    assert verify(token, request(proof(token=token, nonce=err.nonce), policy=policy))


def test_stale_or_forged_nonces_are_refused() -> None:
    nonces = DpopNonces(SECRET, lifetime=300)
    policy = DpopPolicy(MemoryReplayCache(), nonces=nonces, max_age_seconds=10_000)
    token = bound_token(exp=NOW + 5000)
    old = nonces.issue(NOW - 700)
    refused(token, request(proof(token=token, nonce=old), policy=policy), "use_dpop_nonce")
    forged = DpopNonces(b"another-secret-of-32-bytes-long!").issue(NOW)
    refused(token, request(proof(token=token, nonce=forged), policy=policy), "use_dpop_nonce")
    previous_window = nonces.issue(NOW - 300)
    assert verify(token, request(proof(token=token, nonce=previous_window), policy=policy))


def test_memory_replay_cache_forgets_after_expiry_and_fails_closed_when_full() -> None:
    cache = MemoryReplayCache(max_entries=2)
    assert cache.add("a", expires_at=10, now=0)
    assert not cache.add("a", expires_at=10, now=5)
    assert cache.add("a", expires_at=30, now=10)  # expired, so usable again
    assert cache.add("b", expires_at=30, now=11)
    assert not cache.add("c", expires_at=30, now=12)  # full of live entries: refuse, never forget
    assert cache.add("c", expires_at=50, now=31)


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TOKEN = bound_token(exp=NOW + 3600)
_PROOF = proof(token=_TOKEN)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_change_to_a_proof_never_verifies(data: st.DataObject) -> None:
    pos = data.draw(st.integers(0, len(_PROOF) - 1))
    if _PROOF[pos] == ".":
        return
    char = data.draw(st.sampled_from(_B64).filter(lambda c: c != _PROOF[pos]))
    with pytest.raises(TokenError) as info:
        verify(_TOKEN, request(_PROOF[:pos] + char + _PROOF[pos + 1:]))
    assert info.value.reason == "dpop_invalid"


def test_rfc7638_thumbprint_example() -> None:
    jwk = {"kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29", "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRX"
        "jBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaS"
        "qzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksIN"
        "HaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")}
    assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    assert jwk_thumbprint(public_jwk(ec_key(), "x", use="sig")) == thumbprint(ec_key())


def test_dpop_policy_follows_the_settings() -> None:
    from akson.access.dpop import dpop_policy_from_settings
    from akson.config import Settings
    plain = dpop_policy_from_settings(Settings(dpop_max_age_seconds=30))
    assert plain.nonces is None and plain.max_age_seconds == 30
    with pytest.raises(ValueError):
        dpop_policy_from_settings(Settings(dpop_nonce=True))
    assert dpop_policy_from_settings(Settings(dpop_nonce=True), nonce_secret=SECRET).nonces is not None
