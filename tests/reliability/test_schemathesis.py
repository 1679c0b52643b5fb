"""Property-based fuzzing of every operation in /openapi.json: no input yields a 5xx.

Schemathesis 3.x generates requests from the OpenAPI document the server publishes (so the
document is tested too: it must load and describe operations schemathesis can call). It runs as a
plain pytest test on the session's in-process server, on SQLite and on PostgreSQL: for each
operation a bounded, derandomised Hypothesis run of schema-conforming (positive) and
schema-violating (negative) cases, each checked with `not_a_server_error`.
"""

from __future__ import annotations

import time
import types
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.internal.conjecture import utils as conjecture_utils
from schemathesis import DataGenerationMethod
from schemathesis.checks import not_a_server_error
from schemathesis.exceptions import SkipTest

MAX_EXAMPLES = 25


class _LegacyMany:
    """`elements.more()` / `elements.reject()` on top of Hypothesis's newer `many` (a context
    manager iterated with `for _ in elements`), for hypothesis-jsonschema 0.23, which still calls
    `more()`. Without it every object schema fails with "'many' object has no attribute 'more'".
    """

    def __init__(self, data: Any, min_size: int, max_size: float, average_size: float) -> None:
        self._many = conjecture_utils.many(data, min_size=min_size, max_size=max_size,
                                           average_size=average_size)
        self._many.__enter__()
        self._elements = iter(self._many)

    def more(self) -> bool:
        if next(self._elements, StopIteration) is StopIteration:
            self._many.__exit__(None, None, None)
            return False
        return True

    def reject(self, why: str | None = None) -> None:
        self._many.reject(why)


def outcome_on_error(response: Any, case: schemathesis.Case) -> None:
    """Every FHIR error is an OperationOutcome (ARCHITECTURE.md principle 5)."""
    if response.content == b"Invalid HTTP request received.":
        return  # uvicorn's HTTP parser refused the request (e.g. a header value h11 rejects)
    if case.path.startswith("/fhir") and response.status_code >= 400:
        where = f"{response.status_code} for {case.method} {response.request.url}"
        try:
            body = response.json()
        except ValueError:
            raise AssertionError(f"{where}: the body is not JSON: {response.content[:200]!r} "
                                 f"(headers {dict(response.headers)})") from None
        assert body.get("resourceType") == "OperationOutcome", f"{where}: {response.text[:300]}"
        assert body.get("issue"), f"{where}: {response.text[:300]}"


@pytest.fixture(autouse=True)
def _hypothesis_jsonschema_compat(monkeypatch: pytest.MonkeyPatch) -> None:
    from hypothesis_jsonschema import _from_schema

    if not hasattr(conjecture_utils.many, "more"):
        monkeypatch.setattr(_from_schema, "cu", types.SimpleNamespace(many=_LegacyMany))


def test_openapi_document_loads(server) -> None:
    schema = schemathesis.from_uri(server.url + "/openapi.json", base_url=server.url,
                                   validate_schema=True)
    operations = [op.ok() for op in schema.get_all_operations()]
    paths = {(op.method.upper(), op.path) for op in operations}
    assert ("GET", "/fhir/{type}/{id}") in paths
    assert ("POST", "/fhir") in paths
    assert len(operations) >= 12


@pytest.mark.parametrize("method", [DataGenerationMethod.positive, DataGenerationMethod.negative],
                         ids=lambda m: m.name)
def test_no_server_errors(server, method: DataGenerationMethod) -> None:
    schema = schemathesis.from_uri(server.url + "/openapi.json", base_url=server.url,
                                   data_generation_methods=[method])
    session = requests.Session()  # one keep-alive connection for all cases
    token = server.auth()  # the built-in system client: what is behind authentication is tested

    def sign(request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = token.header
        return request

    session.auth = sign
    started = time.monotonic()
    failures: list[str] = []
    skipped: list[str] = []
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        strategy = operation.as_strategy(data_generation_method=method)

        @settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
                  phases=[Phase.explicit, Phase.generate],  # a failure is reported, not shrunk
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def check(case: schemathesis.Case) -> None:
            nonlocal calls
            calls += 1
            response = case.call(base_url=server.url, session=session, timeout=30)
            case.validate_response(response, checks=(not_a_server_error, outcome_on_error))

        try:
            check()
        except SkipTest:  # e.g. no negative cases exist for an operation without inputs
            skipped.append(operation.verbose_name)
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report
            failures.append(f"{operation.verbose_name}: {type(exc).__name__}: {str(exc)[:1500]}")
    elapsed = time.monotonic() - started
    assert not failures, "\n\n".join(failures)
    assert len(skipped) <= 2, skipped
    assert calls >= MAX_EXAMPLES * 5  # the fuzzing actually ran
    # Time is reported, not asserted: speed lives in benchmarks, and a loaded machine made a
    # time budget here fail tests that found nothing wrong.
    print(f"schemathesis {method.name}: {calls} calls in {elapsed:.0f}s")
