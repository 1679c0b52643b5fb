"""Rotating refresh tokens with reuse detection, and RP-initiated logout."""

from __future__ import annotations

import re

import httpx

from tests.idp.conftest import POST_LOGOUT, Env
from tests.idp.support import (
    authorize_params,
    exchange,
    login_citizen,
    login_practitioner,
    pkce_pair,
    query_of,
    verify,
)


def _login(env: Env, http: httpx.Client) -> dict:
    verifier, challenge = pkce_pair()
    done = login_practitioner(http, env, authorize_params(env, challenge),
                              env.user("Fastlege").id_value)
    response = exchange(http, query_of(done.headers["location"])["code"], verifier)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _refresh(http: httpx.Client, token: str, **extra: str) -> httpx.Response:
    return http.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": token,
                                          "client_id": "test-app", **extra})


def test_refresh_rotates_the_refresh_token(env: Env, http: httpx.Client):
    first = _login(env, http)
    second = _refresh(http, first["refresh_token"])
    assert second.status_code == 200, second.text
    body = second.json()
    assert body["refresh_token"] != first["refresh_token"]
    old, new = verify(env, first["access_token"]), verify(env, body["access_token"])
    assert new["sub"] == old["sub"] and new["jti"] != old["jti"]
    assert new["helseid://claims/hpr/hpr_number"] == old["helseid://claims/hpr/hpr_number"]
    third = _refresh(http, body["refresh_token"])
    assert third.status_code == 200


def test_reusing_a_refresh_token_revokes_the_family(env: Env, http: httpx.Client):
    first = _login(env, http)
    rotated = _refresh(http, first["refresh_token"]).json()["refresh_token"]
    reuse = _refresh(http, first["refresh_token"])  # the old one again: stolen?
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    # Neither the thief nor the legitimate holder can go on with this login.
    after = _refresh(http, rotated)
    assert after.status_code == 400 and after.json()["error"] == "invalid_grant"


def test_refresh_may_narrow_but_not_widen_scope(env: Env, http: httpx.Client):
    first = _login(env, http)
    narrowed = _refresh(http, first["refresh_token"], scope="openid user/*.cruds")
    assert narrowed.status_code == 200 and narrowed.json()["scope"] == "openid user/*.cruds"
    wider = _refresh(http, narrowed.json()["refresh_token"], scope="openid launch/patient")
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"


def test_refresh_token_of_another_client_is_refused(env: Env, http: httpx.Client):
    first = _login(env, http)
    refused = http.post("/auth/token", data={"grant_type": "refresh_token",
                                             "refresh_token": first["refresh_token"],
                                             "client_id": "akson-web"})
    assert refused.status_code == 400
    assert _refresh(http, first["refresh_token"]).status_code == 200, "the family is intact"


def test_logout_ends_the_session_and_revokes_its_refresh_tokens(env: Env, http: httpx.Client):
    tokens = _login(env, http)
    response = http.get("/auth/logout", params={
        "id_token_hint": tokens["id_token"], "post_logout_redirect_uri": POST_LOGOUT,
        "state": "bye-1"})
    assert response.status_code == 303
    assert response.headers["location"] == f"{POST_LOGOUT}?state=bye-1"
    refused = _refresh(http, tokens["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def test_logout_without_id_token_hint_asks_the_user_first(env: Env, http: httpx.Client):
    tokens = _login(env, http)
    question = http.get("/auth/logout")
    assert question.status_code == 200 and "Vil du logge ut" in question.text
    tokens = _refresh(http, tokens["refresh_token"]).json()  # a GET alone ended nothing
    assert "refresh_token" in tokens
    forged = http.post("/auth/logout", data={"csrf": "0" * 64})
    assert forged.status_code == 403
    csrf = re.search(r'name="csrf" value="([^"]+)"', question.text)
    assert csrf
    done = http.post("/auth/logout", data={"csrf": csrf.group(1)})
    assert done.status_code == 200 and "Du er logget ut" in done.text
    assert _refresh(http, tokens["refresh_token"]).status_code == 400


def test_logout_never_redirects_to_an_unregistered_uri(env: Env, http: httpx.Client):
    tokens = _login(env, http)
    response = http.get("/auth/logout", params={
        "id_token_hint": tokens["id_token"], "post_logout_redirect_uri": "http://evil.test/"})
    assert response.status_code == 400 and "location" not in response.headers
    assert _refresh(http, tokens["refresh_token"]).status_code == 200, "nothing was ended"


def test_a_code_from_an_ended_session_is_refused(env: Env, http: httpx.Client):
    verifier, challenge = pkce_pair()
    done = login_citizen(http, authorize_params(env, challenge), env.user("Innbygger").id_value)
    question = http.get("/auth/logout")
    csrf = re.search(r'name="csrf" value="([^"]+)"', question.text)
    assert csrf and http.post("/auth/logout", data={"csrf": csrf.group(1)}).status_code == 200
    refused = exchange(http, query_of(done.headers["location"])["code"], verifier)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
