"""In-process node agents on loopback gRPC over a real checkpoint, each with its own trust setting."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgesplit.node.agent import NodeAgent
from edgesplit.node.config import NodeConfig
from edgesplit.transport.base import ChainStep, Hop, Route
from edgesplit.transport.grpc_client import GrpcSegmentClient


@dataclass(frozen=True)
class NodeSpec:
    node_id: str
    segment: tuple[int, int]
    trusted: bool = True
    privacy_blocks: tuple[int, ...] = ()
    extra: dict[str, object] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def running_nodes(
    specs: Sequence[NodeSpec], model: Path
) -> AsyncIterator[tuple[Route, dict[str, NodeAgent]]]:
    """Start one NodeAgent per spec (port 0), committed as epoch 0; stop them all on exit."""
    agents: dict[str, NodeAgent] = {}
    stops: list[asyncio.Event] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        for spec in specs:
            config = NodeConfig(
                node_id=spec.node_id,
                model=str(model),
                segments=[spec.segment],
                trusted=spec.trusted,
                privacy_blocks=list(spec.privacy_blocks),
                torch_threads=1,
                **spec.extra,  # type: ignore[arg-type]
            )
            agent = NodeAgent(config)
            stop, ready = asyncio.Event(), asyncio.Event()
            tasks.append(asyncio.create_task(agent.run(stop, on_ready=lambda _a, r=ready: r.set())))
            stops.append(stop)
            await asyncio.wait_for(ready.wait(), 60)
            agents[spec.node_id] = agent
        hops = tuple(Hop(s.node_id, agents[s.node_id].address, *s.segment) for s in specs)
        yield Route(0, hops), agents
    finally:
        for stop in stops:
            stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)


async def greedy(
    client: GrpcSegmentClient,
    route: Route,
    session: str,
    prompt: Sequence[int],
    n: int,
    privacy_high: bool = True,
) -> list[int]:
    """Greedy decode ``n`` tokens of one session over ``route`` (ends the session afterwards)."""
    try:
        step = ChainStep(session, tuple(prompt), 0, privacy_high=privacy_high)
        out = [(await client.run_step(route, step, 30.0)).token_id]
        position = len(prompt)
        while len(out) < n:
            step = ChainStep(session, (out[-1],), position, privacy_high=privacy_high)
            out.append((await client.run_step(route, step, 30.0)).token_id)
            position += 1
        return out
    finally:
        await client.end_session(route, session)


def reference_tokens(model: Path, prompt: Sequence[int], n: int) -> list[int]:
    """The same greedy decode in one process, one segment: what every split must reproduce."""
    from edgesplit.model.chain import SegmentChain
    from edgesplit.model.loader import load_block_model

    block_model = load_block_model(model)
    chain = SegmentChain.from_block_model(block_model, [(0, block_model.num_blocks)])
    return list(chain.generate(list(prompt), n))
