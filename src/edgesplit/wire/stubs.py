"""Client-side wrappers over the generated stubs: domain values in, domain values out, errors mapped.

Callers (transport/, node/) never see protobuf; every call takes a deadline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from edgesplit.security.pki import TLS_SERVER_NAME
from edgesplit.wire.codec import envelope_to_pb, outcome_to_pb, telemetry_from_pb
from edgesplit.wire.errors import error_from_rpc
from edgesplit.wire.gen import node_pb2, node_pb2_grpc
from edgesplit.wire.kv_codec import kv_from_pb, kv_to_pb
from edgesplit.wire.messages import EpochState, KVTransfer, StepEnvelope, StepOutcome, TelemetrySnapshot

MAX_MESSAGE_BYTES = 512 * 1024 * 1024
CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]


def open_channel(address: str, credentials: grpc.ChannelCredentials | None = None) -> grpc.aio.Channel:
    """An aio channel with edgesplit's message-size limits; mTLS when ``credentials`` are given
    (transport/tls.py), the server verified against the name every cluster certificate carries."""
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
    options = [*CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", TLS_SERVER_NAME)]
    return grpc.aio.secure_channel(address, credentials, options=options)


@dataclass(frozen=True)
class EncodedStep:
    """A step already serialised for sending; ``nbytes`` is what the link emulator charges."""

    message: node_pb2.StepRequest
    nbytes: int

    def stamp_send_s(self, send_s: float) -> None:
        """Fill the sender's own timing (the last one) once its link wait is known."""
        if self.message.timings:
            self.message.timings[-1].send_s = send_s


def encode_step(env: StepEnvelope) -> EncodedStep:
    message = envelope_to_pb(env)
    return EncodedStep(message=message, nbytes=int(message.ByteSize()))


def outcome_nbytes(outcome: StepOutcome) -> int:
    return int(outcome_to_pb(outcome).ByteSize())


def _epoch_state(reply: node_pb2.PrepareReply | node_pb2.EpochReply) -> EpochState:
    load_s = reply.load_s if isinstance(reply, node_pb2.PrepareReply) else 0.0
    return EpochState(
        epoch=reply.epoch, segments=tuple((s.start, s.end) for s in reply.segments), load_s=load_s
    )


class NodeStub:
    """Calls one node's ``Node`` service; failures raise the mapped edgesplit error."""

    def __init__(self, channel: grpc.aio.Channel, peer: str = "") -> None:
        self._stub = node_pb2_grpc.NodeStub(channel)  # type: ignore[no-untyped-call]
        self._peer = peer

    async def send_step(self, step: EncodedStep, timeout_s: float) -> None:
        try:
            await self._stub.Step(step.message, timeout=timeout_s)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self._peer) from None

    async def send_steps(self, steps: list[EncodedStep], timeout_s: float) -> None:
        """Several steps for this node in one message (one gRPC call for a whole batch)."""
        if len(steps) == 1:
            return await self.send_step(steps[0], timeout_s)
        try:
            await self._stub.StepMany(node_pb2.StepBatch(steps=[s.message for s in steps]), timeout=timeout_s)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self._peer) from None

    async def ping(self, payload: bytes, timeout_s: float) -> bytes:
        try:
            reply = await self._stub.Ping(node_pb2.PingRequest(payload=payload), timeout=timeout_s)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self._peer) from None
        return bytes(reply.payload)

    async def probe(self, from_node_id: str, payload: bytes, timeout_s: float) -> int:
        """One link probe to this node; returns how many payload bytes it received."""
        try:
            request = node_pb2.ProbeRequest(from_node_id=from_node_id, payload=payload)
            reply = await self._stub.Probe(request, timeout=timeout_s)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self._peer) from None
        return int(reply.received_bytes)

    async def end_session(self, session_id: str, timeout_s: float) -> int:
        return await self._session_call(self._stub.EndSession, session_id, timeout_s)

    async def halt_session(self, session_id: str, timeout_s: float) -> int:
        """Stop the chain feeding this session's tokens back (its caches stay)."""
        return await self._session_call(self._stub.HaltSession, session_id, timeout_s)

    async def _session_call(self, method: Any, session_id: str, timeout_s: float) -> int:
        try:
            reply = await method(node_pb2.EndSessionRequest(session_id=session_id), timeout=timeout_s)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self._peer) from None
        return int(reply.dropped)

    async def prepare(self, plan_json: bytes, signature: bytes, timeout_s: float) -> EpochState:
        """Ask the node to load its segments of a plan (canonical JSON bytes, see PlanSpec)."""
        try:
            reply = await self._stub.Prepare(
                node_pb2.PrepareRequest(plan_json=plan_json, signature=signature), timeout=timeout_s
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self._peer) from None
        return _epoch_state(reply)

    async def commit(
        self, epoch: int, timeout_s: float, signed: bytes = b"", signature: bytes = b""
    ) -> EpochState:
        return await self._epoch_call(self._stub.Commit, epoch, timeout_s, signed, signature)

    async def release(
        self, epoch: int, timeout_s: float, signed: bytes = b"", signature: bytes = b""
    ) -> EpochState:
        return await self._epoch_call(self._stub.Release, epoch, timeout_s, signed, signature)

    async def _epoch_call(
        self, rpc: Any, epoch: int, timeout_s: float, signed: bytes, signature: bytes
    ) -> EpochState:
        """Commit and Release share one request shape: an epoch and the signed message behind it."""
        try:
            request = node_pb2.EpochRequest(epoch=epoch, signed=signed, signature=signature)
            reply = await rpc(request, timeout=timeout_s)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self._peer) from None
        return _epoch_state(reply)

    async def set_emulation(self, emulation_json: str, timeout_s: float) -> str:
        """Replace the node's emulation section (JSON of node.config.EmulationConfig); returns the result."""
        try:
            reply = await self._stub.SetEmulation(
                node_pb2.EmulationUpdate(emulation_json=emulation_json), timeout=timeout_s
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self._peer) from None
        return str(reply.emulation_json)

    async def telemetry(self, timeout_s: float, peers: dict[str, str] | None = None) -> TelemetrySnapshot:
        """The node's report; ``peers`` (node id -> address) tells it which links to probe."""
        try:
            reply = await self._stub.GetTelemetry(
                node_pb2.TelemetryRequest(peers=peers or {}), timeout=timeout_s
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self._peer) from None
        return telemetry_from_pb(reply)

    async def export_kv(self, session_id: str, start: int, end: int, timeout_s: float) -> KVTransfer:
        """The session's KV cache held by this node's segment [start, end)."""
        try:
            reply = await self._stub.ExportKV(
                node_pb2.KVExportRequest(session_id=session_id, start=start, end=end), timeout=timeout_s
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self._peer) from None
        return kv_from_pb(reply, MAX_MESSAGE_BYTES)

    async def import_kv(self, transfer: KVTransfer, timeout_s: float) -> int:
        """Install a session's KV cache in this node's segment of ``transfer.epoch``; returns its length."""
        try:
            reply = await self._stub.ImportKV(kv_to_pb(transfer), timeout=timeout_s)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self._peer) from None
        return int(reply.length)


class SinkStub:
    """Delivers step outcomes to a gateway's ``ResultSink``."""

    def __init__(self, channel: grpc.aio.Channel, peer: str = "") -> None:
        self._stub = node_pb2_grpc.ResultSinkStub(channel)  # type: ignore[no-untyped-call]
        self._peer = peer

    async def deliver_many(self, outcomes: list[StepOutcome], timeout_s: float) -> None:
        if len(outcomes) == 1:
            return await self.deliver(outcomes[0], timeout_s)
        try:
            await self._stub.DeliverMany(
                node_pb2.StepResults(results=[outcome_to_pb(o) for o in outcomes]), timeout=timeout_s
            )
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self._peer) from None

    async def deliver(self, outcome: StepOutcome, timeout_s: float) -> None:
        try:
            await self._stub.Deliver(outcome_to_pb(outcome), timeout=timeout_s)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, self._peer) from None
