"""System clients: client_credentials with private_key_jwt (RFC 7523) or a client secret."""

from __future__ import annotations

import httpx
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ec

from akson.idp_cli import token as token_command
from tests.idp.conftest import BASIC_SECRET, POST_SECRET, Env
from tests.idp.support import assertion, client_credentials, verify


def _error(response: httpx.Response) -> str:
    return str(response.json()["error"])


def test_private_key_jwt_gets_a_system_token(env: Env, http: httpx.Client):
    response = client_credentials(http, assertion(env), scope="system/Patient.rs")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and "refresh_token" not in body
    claims = verify(env, body["access_token"], audience=f"{env.url}/fhir")
    assert claims["sub"] == "sys-jwt" and claims["client_id"] == "sys-jwt"
    assert claims["scope"] == "system/Patient.rs"
    assert not {"pid", "helseid://claims/identity/pid", "name"} & set(claims)


def test_default_scope_is_what_the_client_is_registered_for(env: Env, http: httpx.Client):
    body = client_credentials(http, assertion(env)).json()
    assert body["scope"] == "system/*.*"


def test_assertion_signed_by_another_key_is_refused(env: Env, http: httpx.Client):
    stranger = ec.generate_private_key(ec.SECP256R1())
    refused = client_credentials(http, assertion(env, key=stranger))
    assert refused.status_code == 401 and _error(refused) == "invalid_client"


def test_replayed_assertion_is_refused(env: Env, http: httpx.Client):
    once = assertion(env)
    assert client_credentials(http, once).status_code == 200
    replay = client_credentials(http, once)
    assert replay.status_code == 401 and _error(replay) == "invalid_client"


def test_assertion_for_another_audience_is_refused(env: Env, http: httpx.Client):
    refused = client_credentials(http, assertion(env, aud="https://other.example/token"))
    assert refused.status_code == 401 and _error(refused) == "invalid_client"


def test_expired_or_long_lived_assertions_are_refused(env: Env, http: httpx.Client):
    assert client_credentials(http, assertion(env, exp_in=-120)).status_code == 401
    assert client_credentials(http, assertion(env, exp_in=3600)).status_code == 401


def test_assertion_naming_another_client_is_refused(env: Env, http: httpx.Client):
    # sys-jwt's key cannot speak for akson-cli, whose key is another.
    refused = client_credentials(http, assertion(env, client_id="akson-cli"))
    assert refused.status_code == 401


def test_scope_beyond_the_registration_is_refused(env: Env, http: httpx.Client):
    refused = http.post("/auth/token", data={"grant_type": "client_credentials",
                                             "scope": "system/*.cruds"},
                        auth=("sys-basic", BASIC_SECRET))
    assert refused.status_code == 400 and _error(refused) == "invalid_scope"


def test_client_secret_basic(env: Env, http: httpx.Client):
    ok = http.post("/auth/token", data={"grant_type": "client_credentials"},
                   auth=("sys-basic", BASIC_SECRET))
    assert ok.status_code == 200, ok.text
    assert verify(env, ok.json()["access_token"])["scope"] == "system/*.rs"
    wrong = http.post("/auth/token", data={"grant_type": "client_credentials"},
                      auth=("sys-basic", "not-the-secret"))
    assert wrong.status_code == 401 and _error(wrong) == "invalid_client"
    assert wrong.headers["www-authenticate"].startswith("Basic")


def test_client_secret_post(env: Env, http: httpx.Client):
    form = {"grant_type": "client_credentials", "client_id": "sys-post"}
    ok = http.post("/auth/token", data={**form, "client_secret": POST_SECRET})
    assert ok.status_code == 200 and ok.json()["scope"] == "system/Patient.rs"
    wrong = http.post("/auth/token", data={**form, "client_secret": "nope"})
    assert wrong.status_code == 401
    as_basic = http.post("/auth/token", data={"grant_type": "client_credentials"},
                         auth=("sys-post", POST_SECRET))
    assert as_basic.status_code == 401, "only the registered method is accepted"


def test_public_client_cannot_use_client_credentials(env: Env, http: httpx.Client):
    refused = http.post("/auth/token", data={"grant_type": "client_credentials",
                                             "client_id": "test-app"})
    assert refused.status_code == 400 and _error(refused) == "unauthorized_client"


def test_malformed_requests_are_4xx(env: Env, http: httpx.Client):
    assert http.post("/auth/token", json={"grant_type": "client_credentials"}).status_code == 400
    twice = http.post("/auth/token", content="grant_type=client_credentials&grant_type=x",
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert twice.status_code == 400
    unknown = http.post("/auth/token", data={"grant_type": "password", "client_id": "test-app"})
    assert unknown.status_code == 400 and _error(unknown) == "unsupported_grant_type"
    garbage = client_credentials(http, "not.a.jwt")
    assert garbage.status_code == 401


def test_akson_token_command_prints_a_token_for_akson_cli(env: Env):
    result = CliRunner().invoke(token_command, ["--url", env.url, "--key-dir", str(env.key_dir),
                                                "--scope", "system/Observation.rs"])
    assert result.exit_code == 0, result.output
    claims = verify(env, result.output.strip())
    assert claims["client_id"] == "akson-cli" and claims["scope"] == "system/Observation.rs"
    assert (env.key_dir / "akson-cli-key.pem").stat().st_mode & 0o077 == 0


def test_akson_token_command_reports_a_refusal(env: Env):
    result = CliRunner().invoke(token_command, ["--url", env.url, "--key-dir", str(env.key_dir),
                                                "--scope", "openid"])
    assert result.exit_code != 0 and "invalid_scope" in result.output
