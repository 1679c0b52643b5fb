"""OAuth 2.0 error responses (RFC 6749 §5.2): `{"error": …, "error_description": …}`.

The token endpoint is spoken to by OAuth libraries, so it answers in OAuth's format rather than
as an OperationOutcome. Descriptions are fixed texts: never a token, secret or national id.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthError(Exception):
    """An OAuth error code with a fixed, non-revealing description."""

    def __init__(self, error: str, description: str, status: int = 400,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.description = description
        self.status = status
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.error, "error_description": self.description},
                            status_code=self.status, headers={**_NO_STORE, **self.headers})


def invalid_client(description: str = "client authentication failed",
                   basic: bool = False) -> OAuthError:
    headers = {"WWW-Authenticate": 'Basic realm="akson"'} if basic else None
    return OAuthError("invalid_client", description, 401, headers)


def no_store_json(body: dict) -> JSONResponse:
    return JSONResponse(body, headers=_NO_STORE)
