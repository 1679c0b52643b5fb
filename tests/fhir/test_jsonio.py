"""akson.fhir.jsonio: what comes in is what goes out, and bad JSON is a clear 400."""

from __future__ import annotations

import re

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from akson.fhir import jsonio
from akson.fhir.outcome import FhirError

DEEP = 64


@pytest.mark.parametrize("body", [
    b'{"a":1.50}',                      # compact, but orjson would write 1.5
    b'{"a": [1.50, 2.5, 1E+2, 1.0e2]}',
    b'{"a":-0}', b'{"a":-0.0}', b'{"a":0.1}', b'{"a":1e16}',
    b'{"a":123456789012345678901234567890}',  # beyond 64 bits
    b'{"a":9223372036854775807}', b'{"a":9223372036854775808}',
    b'{"a":"x:1.50","b":"\\"[[{"}',            # numbers and brackets inside strings
    b'{"resourceType":"Patient","id":"p","active":true}\n',  # an NDJSON line
])
def test_numbers_are_written_back_as_they_came(body: bytes) -> None:
    assert orjson.loads(jsonio.dumps(jsonio.loads(body))) == orjson.loads(body)
    compact = body.replace(b", ", b",").replace(b": ", b":").rstrip()
    assert jsonio.dumps(jsonio.loads(body)) == compact


@pytest.mark.parametrize(("body", "deep"), [
    (b"[" * DEEP + b"]" * DEEP, False),
    (b"[" * (DEEP + 1) + b"]" * (DEEP + 1), True),
    (b'{"a":"' + b"[" * 100 + b'"}', False),                       # brackets in a string
    (b'{"a":"\\"' + b"[" * 100 + b'\\\\"}', False),                # after escaped quotes
    (b'{"a":"\\\\"' + b',"b":[' * 70 + b"]" * 70 + b"}", True),    # an escaped backslash ends it
    (b'{"a":' + b'{"b":' * 70 + b"1" + b"}" * 71, True),
    (b"[" * 5000 + b"]" * 5000, True),                             # beyond orjson's own limit
])
def test_nesting_beyond_the_limit_is_refused(body: bytes, deep: bool) -> None:
    if deep:
        with pytest.raises(FhirError) as err:
            jsonio.loads(body, max_depth=DEEP)
        assert err.value.status == 400 and "nested deeper" in err.value.diagnostics
    else:
        jsonio.loads(body, max_depth=DEEP)


@pytest.mark.parametrize("body", [b'{"a":NaN}', b'{"a":Infinity}', b'{"a":1,}', b"",
                                  b'{"a":"\xc3"}', b'{"a":1e400}', b'{"x":"\\u0001"}'])
def test_bad_json_is_a_400(body: bytes) -> None:
    with pytest.raises(FhirError) as err:
        jsonio.loads(body)
    assert err.value.status == 400


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(alphabet='{}[]"\\:,ab\n\u00e6'),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(alphabet='{}[]"\\ab'), inner),
    max_leaves=30)
_LITERAL = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


@given(_JSON)
def test_the_brackets_counted_are_those_outside_strings(value: object) -> None:
    """The nesting check sees exactly the brackets a string-literal scan leaves (the slower way
    it was done before), whatever quotes, backslashes and brackets the strings hold."""
    body = orjson.dumps(value)
    assert jsonio._brackets(body) == re.sub(rb"[^\[\]{}]", b"", _LITERAL.sub(b"", body))
