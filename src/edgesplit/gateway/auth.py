"""Bearer keys on ``/v1/*`` and admin-only writes, as a pure ASGI middleware.

Pure ASGI rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware relays every chunk
of a streamed response through an extra memory stream and task switch, a cost paid per token.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from edgesplit.gateway.config import GatewayConfig
from edgesplit.gateway.emulation import EMULATION_PATH
from edgesplit.gateway.error_map import ApiError

ADMIN_WRITES = frozenset({"/v1/plan", "/v1/events", "/v1/orchestrator", EMULATION_PATH})
"""PUT/POST on these need the admin token, or a loopback client when the gateway has none."""

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost", "testclient"})
"""Loopback peers; "testclient" is Starlette's TestClient, a real socket peer is an IP address."""


class Authorise:
    """Answers 401 (no or wrong API key) or 403 (admin write without the admin token) before the app."""

    def __init__(self, app: ASGIApp, config: GatewayConfig) -> None:
        self.app = app
        self.api_keys = tuple(config.api_keys)
        self.admin_token = config.admin_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(scope)
            if refusal is not None:
                await error_response(refusal)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> ApiError | None:
        path, method = scope["path"], scope["method"]
        token = bearer_token(scope)
        if method in ("PUT", "POST") and path in ADMIN_WRITES:
            client = scope.get("client")
            host = client[0] if client else ""
            allowed = same_token(token, self.admin_token) if self.admin_token else host in LOOPBACK
            if allowed:
                return None
            return ApiError(
                403,
                f"{method} {path} is an admin write: it needs the admin token (or a loopback client "
                "when the gateway has none)",
                "permission_error",
                None,
                "forbidden",
            )
        if self.api_keys and path.startswith("/v1/") and not any(same_token(token, k) for k in self.api_keys):
            return ApiError(
                401,
                "missing or wrong API key (Authorization: Bearer KEY)",
                "authentication_error",
                None,
                "invalid_api_key",
            )
        return None


def same_token(given: str, expected: str | None) -> bool:
    """Constant-time comparison of a presented token with the expected one."""
    if not expected:
        return False
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )


def error_response(error: ApiError) -> JSONResponse:
    """The OpenAI-shaped error body; a privacy refusal (503) tells clients not to retry."""
    headers = {"x-should-retry": "false"} if error.status == 503 and "privacy" in error.type else None
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def bearer_token(scope: Scope) -> str:
    """The token of the request's ``Authorization: Bearer …`` header ("" when there is none)."""
    for key, value in scope.get("headers", ()):
        if key == b"authorization":
            return str(value.decode("latin-1")).removeprefix("Bearer ").strip()
    return ""
