"""Bad input to every provider endpoint gets a 4xx answer, never a 500."""

from __future__ import annotations

from urllib.parse import urlencode

import httpx
import pytest

from tests.idp.conftest import Env
from tests.idp.support import authorize_params, hidden_fields, pkce_pair

CASES = [
    ("GET", "/auth/authorize", {}, None),
    ("GET", "/auth/authorize", {"client_id": "nobody"}, None),
    ("GET", "/auth/authorize", {"client_id": "test-app", "redirect_uri": "x" * 5000}, None),
    ("POST", "/auth/authorize", None, {}),
    ("POST", "/auth/authorize", None, {"request_id": "nope", "csrf": "x", "step": "citizen"}),
    ("POST", "/auth/token", None, {}),
    ("POST", "/auth/token", None, {"grant_type": "authorization_code", "client_id": "test-app"}),
    ("POST", "/auth/token", None, {"grant_type": "refresh_token", "client_id": "test-app",
                                   "refresh_token": "x"}),
    ("POST", "/auth/token", None, {"client_assertion_type": "x", "client_assertion": "y"}),
    ("GET", "/auth/logout", {"id_token_hint": "not-a-token"}, None),
    ("GET", "/auth/logout", {"post_logout_redirect_uri": "http://evil.test/"}, None),
]


@pytest.mark.parametrize(("method", "path", "params", "form"), CASES)
def test_bad_requests_are_refused_with_4xx(env: Env, http: httpx.Client, method: str, path: str,
                                           params: dict | None, form: dict | None):
    response = http.request(method, path, params=params, data=form)
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:200])


def test_repeated_parameters_bad_basic_credentials_and_oversized_fields(env: Env, http: httpx.Client):
    _, challenge = pkce_pair()
    pairs = [*authorize_params(env, challenge).items(), ("client_id", "akson-web")]
    twice = http.get("/auth/authorize?" + urlencode(pairs))
    assert twice.status_code == 400 and "location" not in twice.headers
    response = http.post("/auth/token", data={"grant_type": "client_credentials"},
                         headers={"Authorization": "Basic !!!not-base64"})
    assert response.status_code == 401
    page = http.get("/auth/authorize", params=authorize_params(env, challenge))
    response = http.post("/auth/authorize", data={**hidden_fields(page.text), "step": "hpr",
                                                  "hpr": "1" * 5000})
    assert response.status_code == 400
