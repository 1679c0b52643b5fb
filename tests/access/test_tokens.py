"""Access-token verification: claim mapping to Principal, and the attacks a token gate must stop."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from akson.access.dpop import DpopPolicy, DpopRequest, MemoryReplayCache
from akson.access.issuers import CallableJwks, TrustedIssuer, TrustedIssuers
from akson.access.jose import b64url_decode, b64url_encode
from akson.access.token_error import TokenError
from akson.access.tokens import (
    HELSEID_PID,
    HELSEID_SECURITY_LEVEL,
    TokenPolicy,
    split_authorization,
    verify_access_token,
)
from tests.access.tokenkit import (
    AKSON_IDP,
    AUDIENCE,
    CITIZEN_FNR,
    HELSEID,
    IDPORTEN,
    NOW,
    PRACTITIONER_FNR,
    base_claims,
    citizen_claims,
    ec_key,
    issuers,
    jwks,
    mint,
    mint_hmac,
    mint_none,
    mint_unsigned_header,
    practitioner_claims,
    public_jwk,
    rsa_key,
)


def refused(token: str, reason: str, **kwargs: Any) -> TokenError:
    kwargs.setdefault("issuers", issuers())
    kwargs.setdefault("now", NOW)
    with pytest.raises(TokenError) as info:
        verify_access_token(token, **kwargs)
    assert info.value.reason == reason
    assert info.value.status == 401
    return info.value


# --- who the token says is asking ---------------------------------------------------------------


def test_helseid_practitioner_token_becomes_a_practitioner_principal() -> None:
    p = verify_access_token(mint(practitioner_claims()), issuers=issuers(), now=NOW)
    assert p.kind == "practitioner"
    assert p.issuer == HELSEID
    assert p.national_id == PRACTITIONER_FNR
    assert p.hpr_number == "9144900"
    assert (p.orgnr_parent, p.orgnr_child) == ("974760673", "974795787")
    assert p.security_level == "4"
    assert p.name == "Lege Legesen"
    assert p.client_id == "epj-client" and p.subject == "pseudonym-sub-1"
    assert [(s.context, s.resource_type, sorted(s.interactions)) for s in p.scopes] == [
        ("user", "Patient", ["r", "s"])]
    assert p.expires_at == NOW + 300 and p.dpop_jkt is None and p.care_relationship is None
    assert PRACTITIONER_FNR not in p.log_name()


def test_idporten_citizen_token_becomes_a_citizen_principal() -> None:
    p = verify_access_token(mint(citizen_claims()), issuers=issuers("idporten", IDPORTEN), now=NOW)
    assert p.kind == "citizen"
    assert p.national_id == CITIZEN_FNR
    assert p.security_level == "idporten-loa-high"
    assert p.hpr_number is None


def test_citizen_below_loa_high_is_refused_unless_the_minimum_is_lowered() -> None:
    token = mint(citizen_claims(acr="idporten-loa-substantial"))
    err = refused(token, "insufficient_user_authentication", issuers=issuers("idporten", IDPORTEN))
    assert err.www_authenticate().startswith('Bearer error="insufficient_user_authentication"')
    lowered = TokenPolicy(citizen_min_acr="idporten-loa-substantial")
    p = verify_access_token(token, issuers=issuers("idporten", IDPORTEN), now=NOW, policy=lowered)
    assert p.security_level == "idporten-loa-substantial"
    per_issuer = issuers("idporten", IDPORTEN, min_acr="idporten-loa-substantial")
    assert verify_access_token(token, issuers=per_issuer, now=NOW).kind == "citizen"


def test_citizen_without_acr_or_pid_is_refused() -> None:
    refused(mint(citizen_claims(acr=None)), "insufficient_user_authentication",
            issuers=issuers("idporten", IDPORTEN))
    refused(mint(citizen_claims(pid=None)), "invalid_token", issuers=issuers("idporten", IDPORTEN))


@pytest.mark.parametrize("level", ["3", None, "x", 3])
def test_practitioner_below_security_level_4_is_refused(level: object) -> None:
    refused(mint(practitioner_claims(**{HELSEID_SECURITY_LEVEL: level})),
            "insufficient_user_authentication")


def test_client_credentials_token_is_a_system_client_without_person() -> None:
    token = mint(base_claims(sub=None, scope=["system/Patient.rs", "system/Observation.r"]))
    p = verify_access_token(token, issuers=issuers(), now=NOW)
    assert p.kind == "system"
    assert p.subject == "epj-client" and p.national_id is None and p.name is None
    assert {s.resource_type for s in p.scopes} == {"Patient", "Observation"}


def test_builtin_provider_may_issue_both_claim_styles_but_not_in_one_token() -> None:
    akson = issuers("akson", AKSON_IDP)
    assert verify_access_token(mint(practitioner_claims(iss=AKSON_IDP)), issuers=akson,
                               now=NOW).kind == "practitioner"
    assert verify_access_token(mint(citizen_claims(iss=AKSON_IDP)), issuers=akson,
                               now=NOW).kind == "citizen"
    both = practitioner_claims(iss=AKSON_IDP, pid=CITIZEN_FNR, acr="idporten-loa-high")
    refused(mint(both), "invalid_token", issuers=akson)


def test_helseid_token_cannot_claim_a_citizen_pid() -> None:
    # A HelseID token is read with HelseID claim names only; a plain `pid` does not make a citizen.
    token = mint(base_claims(pid=CITIZEN_FNR, acr="idporten-loa-high"))
    assert verify_access_token(token, issuers=issuers(), now=NOW).kind == "system"


def test_launch_patient_context_is_carried() -> None:
    p = verify_access_token(mint(practitioner_claims(patient="pat-123")), issuers=issuers(), now=NOW)
    assert p.launch_patient == "pat-123"


def test_es256_and_ps256_tokens_verify_with_their_keys() -> None:
    ec_issuers = issuers(key=ec_key())
    assert verify_access_token(mint(practitioner_claims(), ec_key(), alg="ES256"), issuers=ec_issuers,
                               now=NOW).kind == "practitioner"
    assert verify_access_token(mint(practitioner_claims(), alg="PS256"), issuers=issuers(),
                               now=NOW).kind == "practitioner"


def test_token_without_kid_uses_the_issuers_only_key() -> None:
    assert verify_access_token(mint(practitioner_claims(), kid=None), issuers=issuers(), now=NOW)


@pytest.mark.parametrize("typ", ["JWT", "at+JWT", "application/at+jwt"])
def test_access_token_types_accepted(typ: str) -> None:
    assert verify_access_token(mint(practitioner_claims(), typ=typ), issuers=issuers(), now=NOW)


# --- attacks ------------------------------------------------------------------------------------


def test_forged_signature_by_another_key_with_the_same_kid_is_refused() -> None:
    refused(mint(practitioner_claims(), rsa_key("attacker")), "bad_signature")


def test_payload_changed_after_signing_is_refused() -> None:
    head, _, sig = mint(practitioner_claims()).split(".")
    forged = b64url_encode(json.dumps(practitioner_claims(**{HELSEID_PID: CITIZEN_FNR})).encode())
    refused(f"{head}.{forged}.{sig}", "bad_signature")


def test_expired_token_is_refused_beyond_the_leeway() -> None:
    assert verify_access_token(mint(practitioner_claims(exp=NOW - 10)), issuers=issuers(), now=NOW)
    err = refused(mint(practitioner_claims(exp=NOW - 31)), "expired")
    assert err.www_authenticate() == 'Bearer error="invalid_token", error_description="expired"'


def test_a_token_seen_before_is_still_checked_on_every_use() -> None:
    """The verified-signature cache skips only the signature: expiry is checked again, and a
    token whose key the issuer no longer holds (rotated out under the same kid) is refused."""
    token = mint(practitioner_claims(exp=NOW + 60))
    assert verify_access_token(token, issuers=issuers(), now=NOW)
    assert verify_access_token(token, issuers=issuers(), now=NOW + 30)  # a hit
    refused(token, "expired", now=NOW + 120)
    refused(token, "bad_signature", issuers=issuers(key=rsa_key("rotated")))
    refused(token, "unknown_issuer", issuers=issuers(iss=IDPORTEN))


def test_an_accepted_token_used_again_is_still_refused_when_its_moment_has_passed() -> None:
    """A repeat of an accepted token skips what its bytes settle (type, algorithm, audience,
    claims: the same `Principal` comes back) but not what may have changed since: its expiry,
    its key still being the issuer's, the installation requiring DPoP, the DPoP scheme."""
    current = {"jwks": jwks((rsa_key(), "k1"))}
    trusted = TrustedIssuers([TrustedIssuer(HELSEID, CallableJwks(lambda: current["jwks"]),
                                            frozenset({AUDIENCE}), "helseid")])
    policy = TokenPolicy()
    token = mint(practitioner_claims(exp=NOW + 60, nbf=NOW + 20))
    refused(token, "not_yet_valid", issuers=trusted, policy=policy, now=NOW - 11)
    first = verify_access_token(token, issuers=trusted, now=NOW, policy=policy)
    assert verify_access_token(token, issuers=trusted, now=NOW + 89, policy=policy) is first
    refused(token, "not_yet_valid", issuers=trusted, policy=policy, now=NOW - 11)
    refused(token, "expired", issuers=trusted, policy=policy, now=NOW + 90)
    refused(token, "dpop_required", issuers=trusted, policy=replace(policy, require_dpop=True))
    as_dpop = DpopRequest("DPoP", None, "GET", AUDIENCE, DpopPolicy(MemoryReplayCache()))
    refused(token, "dpop_invalid", issuers=trusted, policy=policy, dpop=as_dpop)
    refused(token, "unknown_issuer", issuers=issuers(iss=IDPORTEN), policy=policy)
    assert verify_access_token(token, issuers=trusted, now=NOW, policy=policy) is first
    current["jwks"] = jwks((rsa_key("rotated"), "k1"))  # the key left, another took its kid
    refused(token, "bad_signature", issuers=trusted, policy=policy)


def test_token_without_exp_is_refused() -> None:
    refused(mint(practitioner_claims(exp=None)), "invalid_token")
    refused(mint(practitioner_claims(exp="2099-01-01")), "invalid_token")


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_not_yet_valid_token_is_refused(claim: str) -> None:
    refused(mint(practitioner_claims(**{claim: NOW + 120, "exp": NOW + 600})), "not_yet_valid")


@pytest.mark.parametrize("aud", ["someone-else", ["a", "b"], [], None])
def test_wrong_or_missing_audience_is_refused(aud: object) -> None:
    refused(mint(practitioner_claims(aud=aud)), "wrong_audience")


def test_one_accepted_audience_among_several_is_enough() -> None:
    assert verify_access_token(mint(practitioner_claims(aud=["other", AUDIENCE])), issuers=issuers(),
                               now=NOW)


def test_unknown_issuer_is_refused_even_with_a_trusted_key() -> None:
    refused(mint(practitioner_claims(iss="https://evil.example")), "unknown_issuer")
    refused(mint(practitioner_claims(iss=HELSEID + "/")), "unknown_issuer")  # exact match only


def test_alg_none_is_refused() -> None:
    refused(mint_none(practitioner_claims()), "alg_not_allowed")


@pytest.mark.parametrize("secret_form", ["pem", "der", "jwk"])
def test_hs256_signed_with_the_public_key_is_refused(secret_form: str) -> None:
    public = rsa_key().public_key()
    secret = {
        "pem": lambda: public.public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo),
        "der": lambda: public.public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo),
        "jwk": lambda: json.dumps(public_jwk(rsa_key(), "k1")).encode(),
    }[secret_form]()
    refused(mint_hmac(practitioner_claims(), secret), "alg_not_allowed")


def test_algorithm_that_does_not_fit_the_key_type_is_refused() -> None:
    # An ES256 signature presented against an RSA key, and RS512 (not on the allow-list).
    refused(mint(practitioner_claims(), ec_key(), alg="ES256"), "alg_not_allowed")
    refused(mint(practitioner_claims(), alg="RS512"), "alg_not_allowed")


def test_unknown_kid_is_refused() -> None:
    refused(mint(practitioner_claims(), kid="k-unknown"), "unknown_key")


def test_jwk_alg_pins_the_algorithm() -> None:
    from akson.access.issuers import InlineJwks, TrustedIssuer, TrustedIssuers
    pinned = TrustedIssuers([TrustedIssuer(HELSEID, InlineJwks(
        {"keys": [public_jwk(rsa_key(), "k1", alg="PS256")]}), frozenset({AUDIENCE}), "helseid")])
    refused(mint(practitioner_claims(), alg="RS256"), "alg_not_allowed", issuers=pinned)
    assert verify_access_token(mint(practitioner_claims(), alg="PS256"), issuers=pinned, now=NOW)


@pytest.mark.parametrize("typ", ["dpop+jwt", "secevent+jwt", None])
def test_tokens_of_other_types_are_refused(typ: str | None) -> None:
    refused(mint(practitioner_claims(), typ=typ), "wrong_type")


@pytest.mark.parametrize("header", [{"crit": ["exp"]}, {"b64": False}])
def test_headers_we_do_not_understand_are_refused(header: dict[str, Any]) -> None:
    refused(mint(practitioner_claims(), headers=header), "invalid_token")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "1e400"])
def test_non_json_numbers_are_refused(constant: str) -> None:
    # Python's json reads them; an `exp` of NaN compares false with everything and never expires.
    text = json.dumps(practitioner_claims(exp=12345)).replace("12345", constant)
    token = jwt.api_jws.PyJWS().encode(text.encode(), rsa_key(), algorithm="RS256",
                                       headers={"kid": "k1", "typ": "at+jwt"})
    refused(token, "invalid_token")


def test_duplicate_claims_are_refused() -> None:
    head, body, sig = mint(practitioner_claims()).split(".")
    text = b64url_decode(body).decode()
    duplicated = text[:-1] + ', "aud": "evil"}'
    refused(f"{head}.{b64url_encode(duplicated.encode())}.{sig}", "invalid_token")


@pytest.mark.parametrize("raw", ["", "abc", "a.b", "a.b.c.d.e", "x" * 20000, "é.é.é", "..."])
def test_garbage_is_refused_as_invalid_token(raw: str) -> None:
    refused(raw, "invalid_token")


def test_kid_of_wrong_type_is_refused() -> None:
    token = mint(practitioner_claims())
    refused(mint_unsigned_header({"alg": "RS256", "typ": "at+jwt", "kid": 7}, token), "invalid_token")


def test_refusals_never_echo_the_token_or_its_claims() -> None:
    token = mint(practitioner_claims(exp=NOW - 100))
    err = refused(token, "expired")
    shown = " ".join([str(err), err.diagnostics, err.www_authenticate(), json.dumps(err.outcome())])
    assert PRACTITIONER_FNR not in shown and token not in shown and "9144900" not in shown


# --- property tests -----------------------------------------------------------------------------


_SEGMENTS = r"[A-Za-z0-9_-]{0,40}\.[A-Za-z0-9_-]{0,40}\.[A-Za-z0-9_-]{0,40}"
_ANY_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                         | st.text(max_size=20),
                         lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids,
                                                                                  max_size=3), max_leaves=8)
_HEADERS = st.fixed_dictionaries(
    {"alg": st.sampled_from(["none", "HS256", "RS256", "ES256", "PS256", "RS512"]) | _ANY_JSON},
    optional={"kid": st.sampled_from(["k1", "k2"]) | _ANY_JSON, "typ": st.sampled_from(["at+jwt", "JWT"])
              | _ANY_JSON, "crit": _ANY_JSON, "jwk": _ANY_JSON})
_PAYLOADS = st.fixed_dictionaries(
    {}, optional={k: st.just(v) | _ANY_JSON for k, v in practitioner_claims().items()})


def _structured(header: dict[str, Any], payload: dict[str, Any], sig: bytes) -> str:
    return ".".join([b64url_encode(json.dumps(header).encode()), b64url_encode(json.dumps(payload).encode()),
                     b64url_encode(sig)])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300) | st.from_regex(_SEGMENTS)
       | st.builds(_structured, _HEADERS, _PAYLOADS, st.binary(max_size=300)))
def test_arbitrary_input_is_refused_with_a_token_error_never_a_crash(raw: str) -> None:
    with pytest.raises(TokenError):
        verify_access_token(raw, issuers=issuers(), now=NOW)

_VALID = mint(practitioner_claims())
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_change_to_a_signed_token_never_verifies(data: st.DataObject) -> None:
    pos = data.draw(st.integers(0, len(_VALID) - 1))
    if _VALID[pos] == ".":
        return
    char = data.draw(st.sampled_from(_B64).filter(lambda c: c != _VALID[pos]))
    with pytest.raises(TokenError):
        verify_access_token(_VALID[:pos] + char + _VALID[pos + 1:], issuers=issuers(), now=NOW)


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                     lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids,
                                                                              max_size=3), max_leaves=8)
_CLAIM_NAMES = st.sampled_from(sorted(practitioner_claims())) | st.text(min_size=1, max_size=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=_CLAIM_NAMES, value=_JSON | st.just("<deleted>"))
def test_random_claim_mutations_without_the_key_never_verify(name: str, value: Any) -> None:
    claims = practitioner_claims()
    if value == "<deleted>":
        if name not in claims:
            return
        del claims[name]
    else:
        if claims.get(name) == value:
            return
        claims[name] = value
    head, _, sig = _VALID.split(".")
    forged = f"{head}.{b64url_encode(json.dumps(claims).encode())}.{sig}"
    with pytest.raises(TokenError):
        verify_access_token(forged, issuers=issuers(), now=NOW)


@settings(max_examples=60, deadline=None)
@given(iss=st.text(max_size=40).filter(lambda s: s != HELSEID),
       aud=st.one_of(st.text(max_size=20), st.lists(st.text(max_size=20), max_size=3))
       .filter(lambda a: AUDIENCE not in (a if isinstance(a, list) else [a])),
       exp=st.integers(min_value=0, max_value=NOW - 31))
def test_signed_tokens_with_bad_iss_aud_or_exp_never_verify(iss: str, aud: Any, exp: int) -> None:
    for claims, reason in ((practitioner_claims(iss=iss), "unknown_issuer"),
                           (practitioner_claims(aud=aud), "wrong_audience"),
                           (practitioner_claims(exp=exp), "expired")):
        with pytest.raises(TokenError) as info:
            verify_access_token(mint(claims), issuers=issuers(), now=NOW)
        assert info.value.reason == reason


# --- the Authorization header -------------------------------------------------------------------


@pytest.mark.parametrize(("header", "expected"), [
    (None, None), ("", None), ("Bearer abc.def.ghi", ("Bearer", "abc.def.ghi")),
    ("bearer abc", ("Bearer", "abc")), ("DPoP abc", ("DPoP", "abc")), ("dpop  abc ", ("DPoP", "abc")),
])
def test_authorization_header_is_split_into_scheme_and_token(header: str | None, expected: object) -> None:
    assert split_authorization(header) == expected


@pytest.mark.parametrize("header", ["Basic dXNlcjpwdw==", "Bearer", "Bearer a b", "Bearer a, Bearer b",
                                    "abc.def.ghi"])
def test_malformed_authorization_header_is_refused(header: str) -> None:
    with pytest.raises(TokenError) as info:
        split_authorization(header)
    assert info.value.reason == "invalid_token"
