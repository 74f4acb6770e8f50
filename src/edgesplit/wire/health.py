"""Standard gRPC health checking (grpc.health.v1) for node servers, and a client-side check."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from edgesplit.wire.servicers import NODE_SERVICE_NAME


class HealthState:
    """The server's health: NOT_SERVING while loading or draining, SERVING otherwise."""

    def __init__(self, servicer: HealthServicer) -> None:
        self._servicer = servicer

    async def serving(self, ok: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", NODE_SERVICE_NAME):
            await self._servicer.set(name, status)

    async def shutdown(self) -> None:
        await self._servicer.enter_graceful_shutdown()


async def add_health(server: grpc.aio.Server) -> HealthState:
    """Register grpc.health.v1.Health, initially NOT_SERVING for the node service."""
    servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    state = HealthState(servicer)
    await servicer.set(NODE_SERVICE_NAME, health_pb2.HealthCheckResponse.NOT_SERVING)
    return state


async def is_serving(channel: grpc.aio.Channel, timeout_s: float, service: str = NODE_SERVICE_NAME) -> bool:
    """One Check call; False on NOT_SERVING or any failure (unreachable, deadline)."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
    except grpc.RpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
