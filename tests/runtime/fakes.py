"""Test doubles for the data plane: a deterministic fake segment runner and in-process node clusters."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import torch

from edgesplit.errors import SessionError, SessionNotFoundError
from edgesplit.model.steps import SegmentOutput, SegmentStep
from edgesplit.node.agent import NodeAgent
from edgesplit.node.config import NodeConfig
from edgesplit.node.segments import SegmentRunnerLike, SegmentShape
from edgesplit.transport.base import Hop, Route

HIDDEN = 8
VOCAB = 32


def _weights(block: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 + block)
    return torch.randn(HIDDEN, HIDDEN, generator=g) / HIDDEN**0.5


@dataclass
class FakeRunner:
    """Blocks [start, end) of a toy model: embed, layers h = tanh(h W_b + mean(history)), argmax head.

    The per-session running sum of inputs plays the KV cache, so positions matter exactly as in a
    real model; ``batches`` records every batch size the runner saw.
    """

    start: int
    end: int
    n_blocks: int
    state: dict[str, dict[int, tuple[torch.Tensor, int]]] = field(default_factory=dict)
    batches: list[int] = field(default_factory=list)
    delay_s: float = 0.0

    def step(self, steps: Sequence[SegmentStep]) -> list[SegmentOutput]:
        import time

        self.batches.append(len(steps))
        if self.delay_s:
            time.sleep(self.delay_s)
        return [self._one(s) for s in steps]

    def _one(self, step: SegmentStep) -> SegmentOutput:
        sess = (
            self.state.setdefault(step.session_id, {})
            if step.position == 0
            else self.state.get(step.session_id)
        )
        if step.position == 0:
            sess.clear()  # type: ignore[union-attr]
        if sess is None:
            return SegmentOutput(step.session_id, error=SessionNotFoundError(f"no session {step.session_id}"))
        x = step.inputs
        for block in range(self.start, self.end):
            if block == 0:
                if x.dtype.is_floating_point:
                    return SegmentOutput(step.session_id, error=SessionError("embedding needs ids"))
                x = (
                    torch.nn.functional.one_hot(x.long() % HIDDEN, HIDDEN).float()
                    + x.float()[:, None] / VOCAB
                )
            elif block == self.n_blocks - 1:
                logits = (
                    x[-1] @ torch.arange(VOCAB * HIDDEN, dtype=torch.float32).reshape(HIDDEN, VOCAB).sin()
                )
                return SegmentOutput(step.session_id, token_id=int(torch.argmax(logits)))
            else:
                total, count = sess.get(block, (torch.zeros(HIDDEN), 0))
                # causal: position i sees the mean of every input before it (the "KV cache")
                before = total + torch.cumsum(x, 0) - x  # (T, H)
                seen = count + torch.arange(x.shape[0], dtype=torch.float32)[:, None]  # (T, 1)
                mean = torch.where(seen > 0, before / seen.clamp(min=1), torch.zeros_like(before))
                sess[block] = (total + x.sum(0), count + x.shape[0])
                x = torch.tanh(x @ _weights(block) + mean)
        return SegmentOutput(step.session_id, hidden=x)

    def drop(self, session_id: str) -> bool:
        return self.state.pop(session_id, None) is not None


def fake_reference(prompt: list[int], n: int, n_blocks: int) -> list[int]:
    """Greedy tokens of the toy model as one runner, one session, no batching and no network: what every
    split and every transport must reproduce."""
    runner = FakeRunner(0, n_blocks, n_blocks)
    out = [runner.step([SegmentStep("r", torch.tensor(prompt), 0)])[0].token_id]
    position = len(prompt)
    for _ in range(n - 1):
        out.append(runner.step([SegmentStep("r", torch.tensor([out[-1]]), position)])[0].token_id)
        position += 1
    return [int(t) for t in out]  # type: ignore[arg-type]


@dataclass
class FakeSource:
    """A SegmentSource of FakeRunners; remembers them so tests can inspect batches and caches."""

    n_blocks: int
    runners: dict[tuple[int, int], FakeRunner] = field(default_factory=dict)
    delay_s: float = 0.0
    param_bytes_per_block: int = 1000

    def load(self, start: int, end: int) -> tuple[SegmentRunnerLike, SegmentShape]:
        runner = FakeRunner(start, end, self.n_blocks, delay_s=self.delay_s)
        self.runners[(start, end)] = runner
        shape = SegmentShape(start, end, HIDDEN, torch.float32, self.param_bytes_per_block * (end - start))
        return runner, shape


@dataclass
class RunningNode:
    agent: NodeAgent
    source: FakeSource
    stop: asyncio.Event

    @property
    def address(self) -> str:
        return self.agent.address


@contextlib.asynccontextmanager
async def fake_cluster(
    segments: Sequence[tuple[int, int]], n_blocks: int, delay_s: float = 0.0, **node_kwargs: object
) -> AsyncIterator[tuple[Route, list[RunningNode]]]:
    """One in-process node agent per segment on 127.0.0.1:0, committed as epoch 0."""
    nodes: list[RunningNode] = []
    tasks = []
    try:
        for i, (start, end) in enumerate(segments):
            config = NodeConfig(node_id=f"n{i}", segments=[(start, end)], **node_kwargs)  # type: ignore[arg-type]
            source = FakeSource(n_blocks, delay_s=delay_s)
            agent = NodeAgent(config, source)
            stop = asyncio.Event()
            ready = asyncio.Event()
            tasks.append(asyncio.create_task(agent.run(stop, on_ready=lambda _a, r=ready: r.set())))
            await asyncio.wait_for(ready.wait(), 10)
            nodes.append(RunningNode(agent, source, stop))
        route = Route(
            epoch=0,
            hops=tuple(
                Hop(f"n{i}", n.address, s, e)
                for i, (n, (s, e)) in enumerate(zip(nodes, segments, strict=True))
            ),
        )
        yield route, nodes
    finally:
        for node in nodes:
            node.stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
