"""Server-side adapters: generated servicer classes that decode requests and call domain handlers.

Handlers (node/service.py, transport/grpc_client.py's sink) implement the Protocols below and never
see protobuf; edgesplit errors they raise become the mapped gRPC status (wire/errors.py).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import grpc

from edgesplit.errors import EdgesplitError
from edgesplit.wire.codec import envelope_from_pb, outcome_from_pb, telemetry_to_pb
from edgesplit.wire.errors import abort_with
from edgesplit.wire.gen import node_pb2, node_pb2_grpc
from edgesplit.wire.kv_codec import kv_from_pb, kv_to_pb
from edgesplit.wire.messages import EpochState, KVTransfer, StepEnvelope, StepOutcome, TelemetrySnapshot
from edgesplit.wire.tensors import DEFAULT_MAX_TENSOR_BYTES

log = logging.getLogger(__name__)

NODE_SERVICE_NAME = "edgesplit.v1.Node"
SINK_SERVICE_NAME = "edgesplit.v1.ResultSink"


class NodeHandler(Protocol):
    """What a node does with each decoded call."""

    async def step(self, env: StepEnvelope, nbytes: int, decode_error: Exception | None) -> None: ...

    async def end_session(self, session_id: str) -> int: ...

    async def halt_session(self, session_id: str) -> int: ...

    async def prepare(self, plan_json: bytes, signature: bytes) -> EpochState: ...

    async def commit(self, epoch: int, signed: bytes = b"", signature: bytes = b"") -> EpochState: ...

    async def release(self, epoch: int, signed: bytes = b"", signature: bytes = b"") -> EpochState: ...

    async def set_emulation(self, emulation_json: str) -> str: ...

    async def export_kv(self, session_id: str, start: int, end: int) -> KVTransfer: ...

    async def import_kv(self, transfer: KVTransfer) -> int: ...

    async def telemetry(self, peers: dict[str, str] | None = None) -> TelemetrySnapshot: ...

    async def probe(self, from_node_id: str, nbytes: int) -> None: ...


def _segments_pb(state: EpochState) -> list[node_pb2.SegmentRange]:
    return [node_pb2.SegmentRange(start=s, end=e) for s, e in state.segments]


class _NodeServicer(node_pb2_grpc.NodeServicer):
    def __init__(self, handler: NodeHandler, max_tensor_bytes: int) -> None:
        self._h = handler
        self._max_tensor_bytes = max_tensor_bytes

    async def _call(self, context: grpc.aio.ServicerContext, fn: Callable[[], Awaitable[object]]) -> object:
        try:
            return await fn()
        except EdgesplitError as exc:
            await abort_with(context, exc)
        except Exception as exc:
            log.exception("node call failed")
            await context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")
        raise AssertionError("unreachable: abort raises")

    async def Step(
        self, request: node_pb2.StepRequest, context: grpc.aio.ServicerContext
    ) -> node_pb2.StepAck:
        env, error = envelope_from_pb(request, self._max_tensor_bytes)
        await self._call(context, lambda: self._h.step(env, request.ByteSize(), error))
        return node_pb2.StepAck()

    async def StepMany(
        self, request: node_pb2.StepBatch, context: grpc.aio.ServicerContext
    ) -> node_pb2.StepAck:
        for step in request.steps:
            env, error = envelope_from_pb(step, self._max_tensor_bytes)
            await self._call(context, lambda e=env, x=error, s=step: self._h.step(e, s.ByteSize(), x))
        return node_pb2.StepAck()

    async def Ping(
        self, request: node_pb2.PingRequest, context: grpc.aio.ServicerContext
    ) -> node_pb2.PingReply:
        return node_pb2.PingReply(payload=request.payload)

    async def EndSession(
        self, request: node_pb2.EndSessionRequest, context: grpc.aio.ServicerContext
    ) -> node_pb2.EndSessionReply:
        dropped = await self._call(context, lambda: self._h.end_session(request.session_id))
        return node_pb2.EndSessionReply(dropped=int(dropped))  # type: ignore[call-overload]

    async def HaltSession(
        self, request: node_pb2.EndSessionRequest, context: grpc.aio.ServicerContext
    ) -> node_pb2.EndSessionReply:
        halted = await self._call(context, lambda: self._h.halt_session(request.session_id))
        return node_pb2.EndSessionReply(dropped=int(halted))  # type: ignore[call-overload]

    async def Prepare(
        self, request: node_pb2.PrepareRequest, context: grpc.aio.ServicerContext
    ) -> node_pb2.PrepareReply:
        state = await self._call(context, lambda: self._h.prepare(request.plan_json, request.signature))
        assert isinstance(state, EpochState)
        return node_pb2.PrepareReply(epoch=state.epoch, segments=_segments_pb(state), load_s=state.load_s)

    async def Commit(
        self, request: node_pb2.EpochRequest, context: grpc.aio.ServicerContext
    ) -> node_pb2.EpochReply:
        state = await self._call(
            context, lambda: self._h.commit(request.epoch, request.signed, request.signature)
        )
        assert isinstance(state, EpochState)
        return node_pb2.EpochReply(epoch=state.epoch, segments=_segments_pb(state))

    async def Release(
        self, request: node_pb2.EpochRequest, context: grpc.aio.ServicerContext
    ) -> node_pb2.EpochReply:
        state = await self._call(
            context, lambda: self._h.release(request.epoch, request.signed, request.signature)
        )
        assert isinstance(state, EpochState)
        return node_pb2.EpochReply(epoch=state.epoch, segments=_segments_pb(state))

    async def SetEmulation(
        self, request: node_pb2.EmulationUpdate, context: grpc.aio.ServicerContext
    ) -> node_pb2.EmulationReply:
        text = await self._call(context, lambda: self._h.set_emulation(request.emulation_json))
        return node_pb2.EmulationReply(emulation_json=str(text))

    async def GetTelemetry(
        self, request: node_pb2.TelemetryRequest, context: grpc.aio.ServicerContext
    ) -> node_pb2.Telemetry:
        snapshot = await self._call(context, lambda: self._h.telemetry(dict(request.peers)))
        assert isinstance(snapshot, TelemetrySnapshot)
        return telemetry_to_pb(snapshot)

    async def Probe(
        self, request: node_pb2.ProbeRequest, context: grpc.aio.ServicerContext
    ) -> node_pb2.ProbeReply:
        nbytes = request.ByteSize()
        await self._call(context, lambda: self._h.probe(request.from_node_id, nbytes))
        return node_pb2.ProbeReply(received_bytes=len(request.payload))

    async def ExportKV(
        self, request: node_pb2.KVExportRequest, context: grpc.aio.ServicerContext
    ) -> node_pb2.KVState:
        transfer = await self._call(
            context, lambda: self._h.export_kv(request.session_id, request.start, request.end)
        )
        assert isinstance(transfer, KVTransfer)
        return kv_to_pb(transfer)

    async def ImportKV(
        self, request: node_pb2.KVState, context: grpc.aio.ServicerContext
    ) -> node_pb2.KVImportReply:
        async def install() -> int:
            return await self._h.import_kv(kv_from_pb(request, self._max_tensor_bytes))

        length = await self._call(context, install)
        return node_pb2.KVImportReply(length=int(length))  # type: ignore[call-overload]


class _SinkServicer(node_pb2_grpc.ResultSinkServicer):
    def __init__(self, deliver: Callable[[StepOutcome], None]) -> None:
        self._deliver = deliver

    async def Deliver(
        self, request: node_pb2.StepResult, context: grpc.aio.ServicerContext
    ) -> node_pb2.ResultAck:
        self._deliver(outcome_from_pb(request))
        return node_pb2.ResultAck()

    async def DeliverMany(
        self, request: node_pb2.StepResults, context: grpc.aio.ServicerContext
    ) -> node_pb2.ResultAck:
        for result in request.results:
            self._deliver(outcome_from_pb(result))
        return node_pb2.ResultAck()


def add_node_service(
    server: grpc.aio.Server, handler: NodeHandler, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES
) -> None:
    node_pb2_grpc.add_NodeServicer_to_server(  # type: ignore[no-untyped-call]
        _NodeServicer(handler, max_tensor_bytes), server
    )


def add_sink_service(server: grpc.aio.Server, deliver: Callable[[StepOutcome], None]) -> None:
    """Register a ResultSink whose every delivered outcome goes to ``deliver`` (on the event loop)."""
    node_pb2_grpc.add_ResultSinkServicer_to_server(_SinkServicer(deliver), server)  # type: ignore[no-untyped-call]
