"""Error mapping at the gRPC boundary: edgesplit error <-> gRPC status code and wire error code.

Every class of ``edgesplit.errors`` must appear in ``STATUS_BY_ERROR`` (a test enforces it);
errors cross the wire as their ``code`` string, so the receiver rebuilds the same class.
"""

from __future__ import annotations

import grpc

from edgesplit import errors as E

STATUS_BY_ERROR: dict[type[E.EdgesplitError], grpc.StatusCode] = {
    E.EdgesplitError: grpc.StatusCode.UNKNOWN,
    E.UserInputError: grpc.StatusCode.INVALID_ARGUMENT,
    E.ConfigError: grpc.StatusCode.INVALID_ARGUMENT,
    E.InvalidProblemError: grpc.StatusCode.INVALID_ARGUMENT,
    E.ScenarioError: grpc.StatusCode.INVALID_ARGUMENT,
    E.ModelLoadError: grpc.StatusCode.FAILED_PRECONDITION,
    E.UnsupportedArchitectureError: grpc.StatusCode.FAILED_PRECONDITION,
    E.UnsupportedOptionError: grpc.StatusCode.INVALID_ARGUMENT,
    E.SegmentSpecError: grpc.StatusCode.INVALID_ARGUMENT,
    E.InfeasibleError: grpc.StatusCode.FAILED_PRECONDITION,
    E.ShardIntegrityError: grpc.StatusCode.DATA_LOSS,
    E.SessionError: grpc.StatusCode.INVALID_ARGUMENT,
    E.SessionNotFoundError: grpc.StatusCode.NOT_FOUND,
    E.StreamHaltedError: grpc.StatusCode.ABORTED,
    E.CapacityError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    E.TransportError: grpc.StatusCode.UNAVAILABLE,
    E.NodeUnavailableError: grpc.StatusCode.UNAVAILABLE,
    E.PlanRejectedError: grpc.StatusCode.PERMISSION_DENIED,
    E.PrivacyViolationError: grpc.StatusCode.PERMISSION_DENIED,
    E.ServiceDeadError: grpc.StatusCode.INTERNAL,
}

# A status that carries no edgesplit code (a peer outside edgesplit, or the gRPC runtime itself).
ERROR_BY_STATUS: dict[grpc.StatusCode, type[E.EdgesplitError]] = {
    grpc.StatusCode.OK: E.EdgesplitError,
    grpc.StatusCode.CANCELLED: E.TransportError,
    grpc.StatusCode.UNKNOWN: E.EdgesplitError,
    grpc.StatusCode.INVALID_ARGUMENT: E.UserInputError,
    grpc.StatusCode.DEADLINE_EXCEEDED: E.TransportError,
    grpc.StatusCode.NOT_FOUND: E.SessionNotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: E.UserInputError,
    grpc.StatusCode.PERMISSION_DENIED: E.PlanRejectedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: E.CapacityError,
    grpc.StatusCode.FAILED_PRECONDITION: E.UserInputError,
    grpc.StatusCode.ABORTED: E.TransportError,
    grpc.StatusCode.OUT_OF_RANGE: E.UserInputError,
    grpc.StatusCode.UNIMPLEMENTED: E.EdgesplitError,
    grpc.StatusCode.INTERNAL: E.ServiceDeadError,
    grpc.StatusCode.UNAVAILABLE: E.NodeUnavailableError,
    grpc.StatusCode.DATA_LOSS: E.ShardIntegrityError,
    grpc.StatusCode.UNAUTHENTICATED: E.PlanRejectedError,
}

CODE_METADATA_KEY = "edgesplit-error-code"


def all_error_classes() -> list[type[E.EdgesplitError]]:
    """EdgesplitError and every subclass defined anywhere, depth first."""
    found: list[type[E.EdgesplitError]] = []
    stack: list[type[E.EdgesplitError]] = [E.EdgesplitError]
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return found


def _class_by_code() -> dict[str, type[E.EdgesplitError]]:
    return {cls.code: cls for cls in STATUS_BY_ERROR}


def error_from_code(code: str, message: str) -> E.EdgesplitError:
    """Rebuild the edgesplit error a peer reported by its ``code``; unknown codes become the base class."""
    cls = _class_by_code().get(code, E.EdgesplitError)
    return cls(message)


def status_for(error: E.EdgesplitError) -> grpc.StatusCode:
    """The gRPC status for an edgesplit error (nearest mapped ancestor)."""
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return grpc.StatusCode.UNKNOWN


def error_from_rpc(exc: grpc.RpcError, peer: str = "") -> E.EdgesplitError:
    """Map a failed call to an edgesplit error: the peer's code if it sent one, else by status."""
    code = None
    trailing = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == CODE_METADATA_KEY:
            code = value if isinstance(value, str) else value.decode()
    details = exc.details() if hasattr(exc, "details") else str(exc)
    if code is not None:
        return error_from_code(code, details or code)
    status = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    cls = ERROR_BY_STATUS.get(status, E.EdgesplitError)
    where = f" from {peer}" if peer else ""
    return cls(f"gRPC {status.name}{where}: {details}")


async def abort_with(context: grpc.aio.ServicerContext, error: E.EdgesplitError) -> None:
    """End a server call with the mapped status and the edgesplit code in trailing metadata."""
    context.set_trailing_metadata(((CODE_METADATA_KEY, error.code),))
    await context.abort(status_for(error), str(error))
