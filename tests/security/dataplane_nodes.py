"""In-process node agents on loopback gRPC over a real checkpoint, each with its own trust setting."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgesplit.node.agent import NodeAgent
from edgesplit.node.config import NodeConfig
from edgesplit.node.loading import SegmentSource
from edgesplit.transport.base import ChainStep, Hop, Route
from edgesplit.transport.grpc_client import GrpcSegmentClient


@dataclass(frozen=True)
class NodeSpec:
    node_id: str
    segment: tuple[int, int]
    trusted: bool = True
    privacy_blocks: tuple[int, ...] = ()
    extra: dict[str, object] = field(default_factory=dict)


NODE_READY_S = 60.0
NODE_STOP_S = 30.0


@contextlib.asynccontextmanager
async def running_node(config: NodeConfig, source: SegmentSource | None = None) -> AsyncIterator[NodeAgent]:
    """One in-process NodeAgent on ``config.listen`` (port 0 by default) until the block exits; it is
    stopped and awaited even when the block fails. ``source`` replaces the config's model."""
    async with contextlib.AsyncExitStack() as stack:
        yield await _start(stack, config, source)


async def _start(
    stack: contextlib.AsyncExitStack, config: NodeConfig, source: SegmentSource | None = None
) -> NodeAgent:
    """Start one agent and wait until it serves; ``stack`` stops it (stop event, then await its task)."""
    agent = NodeAgent(config, source)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(agent.run(stop, on_ready=lambda _a: ready.set()))

    async def halt() -> None:
        stop.set()
        await asyncio.wait_for(task, NODE_STOP_S)  # an agent that crashed fails the test here

    stack.push_async_callback(halt)
    await asyncio.wait_for(ready.wait(), NODE_READY_S)
    return agent


@contextlib.asynccontextmanager
async def running_nodes(
    specs: Sequence[NodeSpec], model: Path
) -> AsyncIterator[tuple[Route, dict[str, NodeAgent]]]:
    """Start one NodeAgent per spec (port 0), committed as epoch 0; stop them all on exit."""
    async with contextlib.AsyncExitStack() as stack:
        agents: dict[str, NodeAgent] = {}
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
            agents[spec.node_id] = await _start(stack, config)
        hops = tuple(Hop(s.node_id, agents[s.node_id].address, *s.segment) for s in specs)
        yield Route(0, hops), agents


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
