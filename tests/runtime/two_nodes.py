"""Two in-process node agents on loopback with a committed plan: the fixture of the chain tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from edgesplit.gateway.routes import CommittedPlan, RouteBook
from edgesplit.node.agent import NodeAgent
from edgesplit.node.config import NodeConfig
from edgesplit.transport.base import Hop, Route
from edgesplit.transport.node_admin import NodeAdmin
from edgesplit.wire.messages import PlanSegment, PlanSpec

MODEL = "builtin:llama-tiny"  # 4 layers: blocks 0 (embedding), 1..4, 5 (head)
OLD = [(0, 3), (3, 6)]


def route_of(agents: list[NodeAgent], epoch: int, segments: list[tuple[int, int]]) -> Route:
    return Route(epoch, tuple(Hop(f"n{i}", agents[i].address, s, e) for i, (s, e) in enumerate(segments)))


@contextlib.asynccontextmanager
async def two_nodes() -> AsyncIterator[tuple[list[NodeAgent], RouteBook]]:
    """Two in-process node agents over gRPC on 127.0.0.1, serving OLD as epoch 1."""
    from transformers import AutoModelForCausalLM  # noqa: F401  (its lazy import is not thread-safe)

    agents, stops, tasks = [], [], []
    try:
        for i in range(2):
            config = NodeConfig(node_id=f"n{i}", model=MODEL, allow_unsigned_plans=True, torch_threads=1)
            agent, stop, ready = NodeAgent(config), asyncio.Event(), asyncio.Event()
            tasks.append(asyncio.create_task(agent.run(stop, on_ready=lambda _a, r=ready: r.set())))
            await asyncio.wait_for(ready.wait(), 60)
            agents.append(agent)
            stops.append(stop)
        book = RouteBook(frozenset({"n0", "n1"}), frozenset())
        await deploy(agents, book, 1, OLD)
        yield agents, book
    finally:
        for stop in stops:
            stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)


async def deploy(
    agents: list[NodeAgent], book: RouteBook, epoch: int, segments: list[tuple[int, int]]
) -> None:
    """Prepare and commit ``segments`` as ``epoch`` on both nodes (unsigned: test nodes allow it), then
    route new steps on it."""
    plan = PlanSpec(epoch, tuple(PlanSegment(f"n{i}", s, e) for i, (s, e) in enumerate(segments)))
    admins = [NodeAdmin(a.address) for a in agents]
    try:
        await asyncio.gather(*(a.prepare(plan) for a in admins))
        await asyncio.gather(*(a.commit(epoch) for a in admins))
    finally:
        await asyncio.gather(*(a.close() for a in admins))
    book.commit(CommittedPlan(route_of(agents, epoch, segments)))
