"""The FHIR REST API as a plain ASGI application (https://hl7.org/fhir/R4/http.html).

Kept below any web framework on purpose: the hot paths (read, search, create) pay for nothing
but parsing the request and running the interaction.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote

from akson.access.token_error import TokenError
from akson.api.auth import exempt
from akson.api.errors import error_response
from akson.api.fhir import router
from akson.api.fhir.context import FhirContext
from akson.api.fhir.messages import FHIR_JSON, FhirRequest, FhirResponse
from akson.fhir.outcome import FhirError

_JSON_TYPES = {"application/fhir+json", "application/json", "application/json+fhir"}
_BODY_TYPES = {
    "POST": _JSON_TYPES | {"application/x-www-form-urlencoded"},
    "PUT": _JSON_TYPES,
    "PATCH": _JSON_TYPES | {"application/json-patch+json"},
}
_FORMATS = {"json", "application/json", "application/fhir+json", "application/json+fhir"}
#: C0 controls other than tab, CR and LF: never part of a FHIR string (R4 datatypes.html#string).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
_ACCEPTABLE = {"*/*", "application/*", "application/json", "application/fhir+json",
               "application/json+fhir", "application/json-patch+json"}


class FhirApp:
    """ASGI app serving the FHIR base. `prefix` is the mount path, e.g. `/fhir`."""

    def __init__(self, get_ctx: Callable[[], FhirContext], prefix: str = "/fhir",
                 base_url: str | None = None, *,
                 handle: Callable[[FhirContext, FhirRequest], Any] = router.handle,
                 negotiate: Callable[[FhirRequest], None] | None = None) -> None:
        self.get_ctx = get_ctx
        self.prefix = prefix
        self.base_url = base_url
        self.handle = handle
        self.negotiate = negotiate or _negotiate

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        ctx = self.get_ctx()
        method = scope["method"]
        try:
            req = await self._request(ctx, scope, receive)
            if not exempt(req):
                if ctx.auth is None:
                    raise TokenError("invalid_token")
                req.principal = await ctx.auth.authenticate(req)
            self.negotiate(req)
            resp = await self.handle(ctx, req)
        except Exception as exc:  # noqa: BLE001 - every failure must become an OperationOutcome
            resp = error_response(exc)
        await _send(send, resp, head=method == "HEAD")

    async def _request(self, ctx: FhirContext, scope: dict, receive: Callable) -> FhirRequest:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        raw_path = scope.get("raw_path") or scope["path"].encode()
        path = raw_path.decode("latin-1").split("?", 1)[0][len(self.prefix):]
        # Decode escapes byte-for-byte (latin-1), then read the bytes as UTF-8: right for both
        # percent-encoded and raw UTF-8 query strings.
        query = [(_utf8(k), _utf8(v)) for k, v in parse_qsl(
            scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True,
            encoding="latin-1")]
        if any(_CONTROL.search(k) or _CONTROL.search(v) for k, v in query):
            # PostgreSQL text cannot even hold NUL; no FHIR value contains these characters.
            raise FhirError(400, "The query contains a control character (such as NUL), "
                            "which no FHIR value can hold", "value")
        body = await _read_body(receive, headers, ctx.settings.max_body_bytes)
        base_url = self.base_url or _base_url(scope, headers, self.prefix)
        return FhirRequest(
            method=scope["method"],
            path=[unquote(p) for p in path.split("/") if p],
            query=query,
            headers=headers,
            body=body,
            base_url=base_url,
            max_json_depth=ctx.settings.max_json_depth,
            url=base_url + path,
        )


def _utf8(value: str) -> str:
    return value.encode("latin-1").decode("utf-8", "replace")


def _base_url(scope: dict, headers: dict[str, str], prefix: str) -> str:
    host = headers.get("host")
    if not host:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}{prefix}"


async def _read_body(receive: Callable, headers: dict[str, str], limit: int) -> bytes:
    declared = headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise FhirError(413, f"The body is larger than this server accepts ({limit} bytes)",
                        "too-costly")
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise FhirError(400, "The client went away", "incomplete")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise FhirError(413, f"The body is larger than this server accepts ({limit} bytes)",
                            "too-costly")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


def negotiate(req: FhirRequest) -> None:
    """Content negotiation of the FHIR base (see `_negotiate`)."""
    _negotiate(req)


def _negotiate(req: FhirRequest) -> None:
    """406 for formats we do not produce, 415 for bodies we do not read (http.html#mime-type)."""
    fmt = next((v for k, v in req.query if k == "_format"), None)
    if fmt is not None:
        if fmt.split(";")[0].strip().lower() not in _FORMATS:
            raise FhirError(406, f"_format={fmt[:40]} is not supported; this server speaks JSON",
                            "not-supported")
    elif req.path[:1] != ["$export-file"]:  # NDJSON files: their handler checks Accept
        accept = req.header("accept")
        if accept and not _accepts_json(accept):
            raise FhirError(406, "This server answers application/fhir+json only",
                            "not-supported")
    if req.body and req.method in _BODY_TYPES:
        content_type = (req.header("content-type") or "").split(";")[0].strip().lower()
        if content_type not in _BODY_TYPES[req.method]:
            shown = content_type[:60] or "none"
            raise FhirError(415, f"Content-Type {shown} is not supported here; "
                            "send application/fhir+json", "not-supported")


def _accepts_json(accept: str) -> bool:
    for part in accept.split(","):
        media, *params = part.strip().split(";")
        media = media.strip().lower()
        if any(p.strip() in ("q=0", "q=0.0") for p in params):
            continue
        if media in _ACCEPTABLE or media.endswith("+json"):
            return True
    return False


async def _send(send: Callable, resp: FhirResponse, *, head: bool) -> None:
    stream = getattr(resp, "stream", None)
    if stream is not None:  # a file (Bulk Data export): sent in chunks, never read whole
        await stream(send, head=head)
        return
    body = resp.body_bytes()
    headers: list[tuple[bytes, bytes]] = [(b"content-length", str(len(body)).encode())]
    if body and "Content-Type" not in resp.headers:
        headers.append((b"content-type", FHIR_JSON.encode()))
    headers += [(k.lower().encode(), v.encode("latin-1", "replace")) for k, v in resp.headers.items()]
    await send({"type": "http.response.start", "status": resp.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


Scope = dict[str, Any]
