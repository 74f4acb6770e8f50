"""Admin client for one node: plans (prepare/commit/release), emulation, telemetry, health, ping.

For the orchestrator, `edgesplit up` and tests; the gateway's data path uses grpc_client.py.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc

from edgesplit.transport.tls import TlsConfig, channel_credentials
from edgesplit.wire.health import is_serving
from edgesplit.wire.messages import EpochState, KVTransfer, PlanSpec, TelemetrySnapshot
from edgesplit.wire.stubs import NodeStub, open_channel

CONTROL_TIMEOUT_S = 10.0
PREPARE_TIMEOUT_S = 300.0  # loading weights can take minutes


class NodeAdmin:
    """Control calls to the node at ``address``; each raises the mapped edgesplit error."""

    def __init__(self, address: str, tls: TlsConfig | None = None) -> None:
        self.address = address
        self._tls = tls
        self._channel_: grpc.aio.Channel | None = None
        self._stub_: NodeStub | None = None

    @property
    def _channel(self) -> grpc.aio.Channel:
        # Opened on first use, inside the event loop that will drive it.
        if self._channel_ is None:
            self._channel_ = open_channel(self.address, channel_credentials(self._tls))
        return self._channel_

    @property
    def _stub(self) -> NodeStub:
        if self._stub_ is None:
            self._stub_ = NodeStub(self._channel, peer=self.address)
        return self._stub_

    async def wait_serving(self, timeout_s: float) -> bool:
        """Poll grpc.health.v1 until SERVING or ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if await is_serving(self._channel, min(left, 1.0)):
                return True
            await asyncio.sleep(min(0.05, max(left, 0)))

    async def prepare(
        self, plan: PlanSpec, signature: bytes = b"", timeout_s: float = PREPARE_TIMEOUT_S
    ) -> EpochState:
        return await self._stub.prepare(plan.canonical(), signature, timeout_s)

    async def prepare_raw(
        self, plan_json: bytes, signature: bytes, timeout_s: float = PREPARE_TIMEOUT_S
    ) -> EpochState:
        """Prepare with plan bytes exactly as signed (see PlanSpec.canonical)."""
        return await self._stub.prepare(plan_json, signature, timeout_s)

    async def commit(
        self, epoch: int, timeout_s: float = CONTROL_TIMEOUT_S, signed: bytes = b"", signature: bytes = b""
    ) -> EpochState:
        """``signed``/``signature``: the orchestrator's signed commit (orchestrator.signing.SignedMessage)."""
        return await self._stub.commit(epoch, timeout_s, signed, signature)

    async def release(
        self, epoch: int, timeout_s: float = CONTROL_TIMEOUT_S, signed: bytes = b"", signature: bytes = b""
    ) -> EpochState:
        """Release a superseded epoch, or abort a prepared one (the signed message's kind says which)."""
        return await self._stub.release(epoch, timeout_s, signed, signature)

    async def set_emulation(self, emulation: Any, timeout_s: float = CONTROL_TIMEOUT_S) -> str:
        """Replace the node's emulation section (a node.config.EmulationConfig) at run time."""
        return await self._stub.set_emulation(emulation.model_dump_json(), timeout_s)

    async def telemetry(
        self, timeout_s: float = CONTROL_TIMEOUT_S, peers: dict[str, str] | None = None
    ) -> TelemetrySnapshot:
        """``peers`` (node id -> address): the nodes this one should probe its links to."""
        return await self._stub.telemetry(timeout_s, peers)

    async def ping(self, payload: bytes = b"", timeout_s: float = CONTROL_TIMEOUT_S) -> bytes:
        return await self._stub.ping(payload, timeout_s)

    async def end_session(self, session_id: str, timeout_s: float = CONTROL_TIMEOUT_S) -> int:
        return await self._stub.end_session(session_id, timeout_s)

    async def export_kv(
        self, session_id: str, start: int, end: int, timeout_s: float = CONTROL_TIMEOUT_S
    ) -> KVTransfer:
        """The session's KV cache held by the node's segment [start, end)."""
        return await self._stub.export_kv(session_id, start, end, timeout_s)

    async def import_kv(self, transfer: KVTransfer, timeout_s: float = CONTROL_TIMEOUT_S) -> int:
        """Install a session's KV cache in the node's segment of ``transfer.epoch``; returns its length."""
        return await self._stub.import_kv(transfer, timeout_s)

    async def close(self) -> None:
        if self._channel_ is not None:
            await self._channel_.close()
            self._channel_ = self._stub_ = None
