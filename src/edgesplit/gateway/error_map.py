"""The one place edgesplit errors become OpenAI error bodies and HTTP statuses.

Every class of ``edgesplit.errors`` has an explicit row (a test fails when one is missing).
"""

from __future__ import annotations

from typing import Any

from edgesplit import errors


class ApiError(Exception):
    """An error ready for the wire: HTTP status plus the OpenAI ``error`` object's fields."""

    def __init__(
        self, status: int, message: str, type: str, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


#: class → (HTTP status, OpenAI error type). Looked up by exact class, then by its bases.
ERROR_TABLE: dict[type[errors.EdgesplitError], tuple[int, str]] = {
    errors.EdgesplitError: (500, "server_error"),
    errors.UserInputError: (400, "invalid_request_error"),
    errors.ConfigError: (400, "invalid_request_error"),
    errors.InvalidProblemError: (400, "invalid_request_error"),
    errors.ScenarioError: (400, "invalid_request_error"),
    errors.ModelLoadError: (500, "server_error"),
    errors.UnsupportedArchitectureError: (500, "server_error"),
    errors.UnsupportedOptionError: (400, "invalid_request_error"),
    errors.SegmentSpecError: (400, "invalid_request_error"),
    errors.InfeasibleError: (503, "unavailable_error"),
    errors.ShardIntegrityError: (500, "server_error"),
    errors.SessionError: (500, "server_error"),
    errors.SessionNotFoundError: (503, "unavailable_error"),
    errors.StreamHaltedError: (503, "unavailable_error"),
    errors.CapacityError: (503, "unavailable_error"),
    errors.TransportError: (503, "unavailable_error"),
    errors.NodeUnavailableError: (503, "unavailable_error"),
    errors.PlanRejectedError: (409, "invalid_request_error"),
    errors.PrivacyViolationError: (503, "privacy_unavailable_error"),
    errors.ServiceDeadError: (503, "unavailable_error"),
}


def to_api_error(exc: BaseException) -> ApiError:
    """Map any exception raised while serving a request; unknown ones are a 500 with no internals."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, TimeoutError):
        return ApiError(
            504, "the request did not finish within its timeout", "timeout_error", None, "timeout"
        )
    if isinstance(exc, errors.EdgesplitError):
        for cls in type(exc).__mro__:
            if cls in ERROR_TABLE:
                status, kind = ERROR_TABLE[cls]
                break
        param = getattr(exc, "param", None)
        return ApiError(status, str(exc) or type(exc).__name__, kind, param, exc.code)
    return ApiError(500, "internal error while serving the request", "server_error", None, None)


def bad_request(message: str, param: str | None = None, code: str | None = "invalid_value") -> ApiError:
    return ApiError(400, message, "invalid_request_error", param, code)
