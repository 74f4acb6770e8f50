"""Malformed gRPC frames against real `edgesplit node` processes while a normal session decodes.

Random bytes as the serialised request of every Node RPC (a raw channel with identity serialisers),
then well-formed steps with wrong tensors, oversized payloads, absurd positions, hop indices, budgets
and sampling values. Each must end in a clean error (a gRPC status, or an error outcome at the
gateway's sink) within a deadline; the nodes must stay up, and the concurrent session must produce
exactly the single-process tokens.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import yaml
from dataplane_nodes import greedy, reference_tokens

from edgesplit.node.launcher import NodeProcess, spawn_node, stop_all
from edgesplit.transport.base import Hop, Route
from edgesplit.transport.grpc_client import GrpcSegmentClient
from edgesplit.wire.gen import node_pb2
from edgesplit.wire.messages import StepOutcome
from edgesplit.wire.servicers import add_sink_service

pytestmark = [pytest.mark.slow, pytest.mark.anyio, pytest.mark.timeout(900)]

MODEL = "builtin:llama-tiny"  # 4 layers -> 6 blocks, hidden 64, vocab 512
SEGMENTS = [(0, 2), (2, 4), (4, 6)]
HIDDEN = 64
PROMPT = [5, 17, 42, 99, 7, 300]
MAX_TENSOR_BYTES = 1 << 20
RANDOM_FRAMES_PER_METHOD = 40
CALL_DEADLINE_S = 10.0
OUTCOME_DEADLINE_S = 15.0
NODE_METHODS = (
    "Step",
    "StepMany",
    "Ping",
    "EndSession",
    "HaltSession",
    "Prepare",
    "Commit",
    "Release",
    "SetEmulation",
    "GetTelemetry",
    "ExportKV",
    "ImportKV",
    "Probe",
)
# Odd but valid: these must be served (a token), not crash anything.
VALID_EDGE_CASES = {"most negative seed"}
# Codes a node may answer a bad step with; "service_dead" would mean an unexpected exception (a bug).
CLEAN_STEP_ERRORS = {"session_error", "session_not_found", "plan_rejected", "capacity", "invalid_input"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def model_dir() -> Path:
    from edgesplit.model.builtin import resolve_model

    return resolve_model(MODEL)


@pytest.fixture(scope="module")
def nodes(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[NodeProcess]]:
    workdir = tmp_path_factory.mktemp("fuzz-nodes")
    procs: list[NodeProcess] = []
    try:
        for i, (start, end) in enumerate(SEGMENTS):
            config = workdir / f"n{i}.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "node_id": f"n{i}",
                        "model": str(model_dir),
                        "segments": [[start, end]],
                        "max_tensor_bytes": MAX_TENSOR_BYTES,
                        "max_step_tokens": 512,
                        "torch_threads": 1,
                    }
                )
            )
            procs.append(spawn_node(f"n{i}", workdir, config=config))
        for proc in procs:
            proc.wait_ready(300)
        yield procs
    finally:
        stop_all(procs)


def _route(procs: list[NodeProcess]) -> Route:
    return Route(0, tuple(Hop(p.node_id, p.address, s, e) for p, (s, e) in zip(procs, SEGMENTS, strict=True)))


@dataclass
class Sink:
    """A ResultSink on a loopback port: collects every outcome the fuzzed nodes report."""

    address: str
    outcomes: dict[str, StepOutcome]
    arrived: asyncio.Event

    async def wait(self, session_id: str) -> StepOutcome:
        async with asyncio.timeout(OUTCOME_DEADLINE_S):
            while session_id not in self.outcomes:
                self.arrived.clear()
                await self.arrived.wait()
        return self.outcomes[session_id]


def _tensor(values: bytes, dtype: str, shape: list[int]) -> node_pb2.Tensor:
    return node_pb2.Tensor(data=values, dtype=dtype, shape=shape)


def _floats(rows: int, cols: int = HIDDEN) -> node_pb2.Tensor:
    return _tensor(bytes(4 * rows * cols), "float32", [rows, cols])


def _ids(*ids: int) -> node_pb2.Tensor:
    return _tensor(b"".join(i.to_bytes(8, "little", signed=True) for i in ids), "int64", [len(ids)])


def _bad_steps(route: Route) -> list[tuple[int, str, node_pb2.StepRequest]]:
    """(target hop, label, request) for every structured malformation."""
    hops = [
        node_pb2.HopSpec(node_id=h.node_id, address=h.address, start=h.start, end=h.end) for h in route.hops
    ]

    def step(hop: int, label: str, **fields: object) -> tuple[int, str, node_pb2.StepRequest]:
        base: dict[str, object] = {
            "epoch": 0,
            "hops": hops,
            "hop_index": hop,
            "position": 0,
            "inputs": _ids(1, 2, 3) if hop == 0 else _floats(3),
            "budget_s": 5.0,
            "privacy_none": True,
        }
        base.update(fields)
        return hop, label, node_pb2.StepRequest(**base)  # type: ignore[arg-type]

    huge = 2**40
    return [
        step(0, "float tokens into the embedding", inputs=_floats(2)),
        step(0, "2-D token ids", inputs=_tensor(bytes(8 * 4), "int64", [2, 2])),
        step(0, "token id beyond the vocabulary", inputs=_ids(10**12)),
        step(0, "negative token id", inputs=_ids(-7)),
        step(0, "zero tokens", inputs=_tensor(b"", "int64", [0])),
        step(0, "more tokens than max_step_tokens", inputs=_ids(*([1] * 600))),
        step(1, "wrong hidden size", inputs=_floats(2, HIDDEN + 1)),
        step(1, "3-D hidden states", inputs=_tensor(bytes(4 * 8 * HIDDEN), "float32", [2, 4, HIDDEN])),
        step(1, "int hidden states", inputs=_tensor(bytes(8 * HIDDEN), "int64", [1, HIDDEN])),
        step(1, "float16 hidden states", inputs=_tensor(bytes(2 * HIDDEN), "float16", [1, HIDDEN])),
        step(1, "NaN hidden states", inputs=_tensor(b"\x00\x00\xc0\x7f" * HIDDEN, "float32", [1, HIDDEN])),
        step(1, "unknown dtype", inputs=_tensor(bytes(4 * HIDDEN), "complex64", [1, HIDDEN])),
        step(1, "bytes do not match the shape", inputs=_tensor(bytes(7), "float32", [1, HIDDEN])),
        step(1, "negative dimension", inputs=_tensor(b"", "float32", [-1, HIDDEN])),
        step(1, "shape product overflows", inputs=_tensor(b"", "float32", [huge, huge, huge])),
        step(1, "oversized tensor (2 MiB > 1 MiB cap)", inputs=_floats(2 * MAX_TENSOR_BYTES // (4 * HIDDEN))),
        step(1, "no tensor at all", inputs=None),
        step(0, "absurd position on a new session", position=2**62),
        step(0, "negative position", position=-5),
        step(1, "hop index past the route", hop_index=7),
        step(1, "hop index names another node", hop_index=0),
        step(0, "empty route", hops=[]),
        step(0, "unknown epoch", epoch=999_999),
        step(0, "negative epoch", epoch=-3),
        step(2, "NaN temperature", sampling=node_pb2.Sampling(temperature=math.nan, top_p=1.0)),
        step(2, "infinite temperature", sampling=node_pb2.Sampling(temperature=math.inf, top_p=1.0)),
        step(2, "negative temperature", sampling=node_pb2.Sampling(temperature=-1.0, top_p=1.0)),
        step(2, "top_p zero", sampling=node_pb2.Sampling(temperature=1.0, top_p=0.0)),
        step(2, "NaN top_p", sampling=node_pb2.Sampling(temperature=1.0, top_p=math.nan)),
        step(
            2,
            "most negative seed",
            sampling=node_pb2.Sampling(temperature=1.0, top_p=1.0, has_seed=True, seed=-(2**63)),
        ),
        step(0, "NaN budget", budget_s=math.nan),
        step(0, "negative budget", budget_s=-10.0),
        step(0, "1 MiB session id", session_id="s" * (1 << 20)),
        step(0, "an endless chain-driven run", continue_steps=2**32 - 1, continue_budget_s=5.0),
        step(0, "chain-driven run without a budget", continue_steps=3, continue_budget_s=math.nan),
    ]


async def _send_raw(channel: grpc.aio.Channel, method: str, payload: bytes) -> grpc.StatusCode:
    call = channel.unary_unary(f"/edgesplit.v1.Node/{method}")  # identity (de)serialisers: raw bytes
    try:
        await call(payload, timeout=CALL_DEADLINE_S)
    except grpc.aio.AioRpcError as exc:
        assert exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED, f"{method} hung on a random frame"
        assert exc.code() != grpc.StatusCode.UNAVAILABLE, f"{method}: the node went away: {exc.details()}"
        if exc.code() in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL):  # only undecodable frames
            assert "DecodeError" in (exc.details() or ""), f"{method}: {exc.code()}: {exc.details()}"
        return exc.code()
    return grpc.StatusCode.OK


async def test_malformed_frames_get_clean_errors_while_a_session_decodes(
    nodes: list[NodeProcess], model_dir: Path
) -> None:
    route = _route(nodes)
    expected = reference_tokens(model_dir, PROMPT, 24)
    outcomes: dict[str, StepOutcome] = {}
    arrived = asyncio.Event()

    def collect(outcome: StepOutcome) -> None:
        outcomes[outcome.session_id] = outcome
        arrived.set()

    server = grpc.aio.server()
    add_sink_service(server, collect)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    sink = Sink(f"127.0.0.1:{port}", outcomes, arrived)
    client = GrpcSegmentClient()
    channels = [grpc.aio.insecure_channel(p.address) for p in nodes]
    statuses: Counter[str] = Counter()
    problems: list[str] = []
    try:
        session = asyncio.create_task(greedy(client, route, "normal", PROMPT, 24, privacy_high=False))
        # 1) Random bytes as every RPC's request, to every node.
        rng = random.Random(20261123)
        for method in NODE_METHODS:
            for i in range(RANDOM_FRAMES_PER_METHOD):
                payload = rng.randbytes(rng.choice((0, 1, 7, 64, 700, 5000)))
                code = await _send_raw(channels[i % len(channels)], method, payload)
                statuses[f"random:{code.name}"] += 1
        print(f"random frames: {dict(sorted(statuses.items()))}", flush=True)
        # 2) Well-formed steps with bad contents: each must come back as a clean error outcome.
        cases = _bad_steps(route)
        for n, (hop, label, request) in enumerate(cases):
            if not request.session_id:
                request.session_id = f"bad-{n}"
            request.step_id = 10_000 + n
            request.reply_address = sink.address
            request.reply_node_id = "fuzzer"
            raw = request.SerializeToString()
            code = await _send_raw(channels[hop], "Step", raw)
            assert code == grpc.StatusCode.OK, f"{label}: the ack failed with {code}"
            outcome = await sink.wait(request.session_id)
            if outcome.ok and label in VALID_EDGE_CASES:
                statuses["step:served"] += 1
                continue
            if outcome.ok:
                problems.append(f"{label}: was accepted and produced token {outcome.token_id}")
            elif outcome.error_code not in CLEAN_STEP_ERRORS:
                problems.append(f"{label}: {outcome.error_code}: {outcome.error_message}")
            statuses[f"step:{outcome.error_code or 'accepted'}"] += 1
        assert not problems, "\n".join(problems)
        # 3) The concurrent session was never disturbed; the nodes are all alive and still serve.
        assert await asyncio.wait_for(session, 120) == expected
        assert all(p.process.poll() is None for p in nodes), "a node process died"
        assert await greedy(client, route, "after", PROMPT, 6, privacy_high=False) == expected[:6]
        total = len(NODE_METHODS) * RANDOM_FRAMES_PER_METHOD + len(cases)
        print(
            f"grpc fuzz: {total} frames ({len(cases)} structured), outcomes {dict(sorted(statuses.items()))}"
        )
    finally:
        for channel in channels:
            await channel.close()
        await client.close()
        await server.stop(grace=1.0)
