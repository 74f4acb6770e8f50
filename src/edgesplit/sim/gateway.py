"""The simulated gateway: the open-loop requests, each session's decode loop over the committed plan's
chain, failover and re-prefill; it records every request as ``edgesplit bench`` does.

Mirrors gateway/decoder.py: a request is a prefill (its first token) then one decode step per further
token; a session whose plan epoch changed, or whose chain lost a node, re-prefills its whole history on
the current chain; a privacy-high request waits for a plan that keeps critical blocks trusted.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import simpy

from edgesplit.evaluation.load import RequestRecord, Status
from edgesplit.evaluation.workload import PlannedRequest
from edgesplit.orchestrator.plans import Plan
from edgesplit.orchestrator.problem_builder import BlockCost
from edgesplit.sim.resources import Links, SimNode
from edgesplit.sim.sensors import GatewayInterval

MAX_REPREFILLS = 4
"""As gateway/decoder.py ``DecodeLimits.max_reprefills``: after this many failovers a request errors."""


@dataclass
class _Session:
    request: PlannedRequest
    high: bool
    epoch: int | None = None
    generated: int = 0
    first_token_s: float | None = None
    failovers: int = 0
    epochs: set[int] = field(default_factory=set)
    nodes_by_block: dict[int, set[str]] = field(default_factory=dict)


class SimGateway:
    """Routes every step on ``plan`` (what the orchestrator last committed); fills ``interval``."""

    def __init__(
        self,
        env: simpy.Environment,
        nodes: dict[str, SimNode],
        links: Links,
        blocks: Sequence[BlockCost],
        source: str,
        trusted: frozenset[str],
        privacy_blocks: frozenset[int],
        *,
        input_bytes: int,
        timeout_s: float,
        poll_s: float,
    ) -> None:
        self.env = env
        self.nodes = nodes
        self.links = links
        self.blocks = tuple(blocks)
        self.source = source
        self.trusted = trusted
        self.privacy_blocks = privacy_blocks
        self.input_bytes = input_bytes
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.plan: Plan | None = None
        self.t0 = 0.0
        """Sim time of the load's start: records are on the load's clock, as bench's are."""
        self.interval = GatewayInterval()
        self.records: list[RequestRecord] = []
        self.steps: list[tuple[float, float, int]] = []
        """(t since load start, true decode-step latency s, epoch) of every decode step."""
        self.live: dict[int, _Session] = {}
        self.waiting_high = 0
        self.finished = env.event()
        self._expected = 0

    # ---- load ------------------------------------------------------------------------------------

    def start_load(self, schedule: Sequence[PlannedRequest], t0: float) -> None:
        self.t0 = t0
        self._expected = len(schedule)
        if not schedule:
            self.finished.succeed()
        for request in schedule:
            self.env.process(self._request(request))

    def take_interval(self) -> GatewayInterval:
        record = self.interval
        record.live_sessions = len(self.live)
        record.contexts = [_context(s) for s in self.live.values()]
        record.privacy_high_pending = self.waiting_high + int(record.privacy_high_pending > 0)
        self.interval = GatewayInterval()
        return record

    def _request(self, request: PlannedRequest) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(max(0.0, self.t0 + request.send_at_s - self.env.now))
        send = self.env.now
        deadline = send + self.timeout_s
        s = _Session(request, request.privacy == "high")
        self.live[request.index] = s
        status: Status = "ok"
        error: str | None = None
        while s.generated < request.max_tokens:
            plan = self.plan
            if self.env.now >= deadline:
                status, error = "timeout", f"no answer within {self.timeout_s:g} s"
                break
            if plan is None or (s.high and not self._compliant(plan)):
                self.waiting_high += int(s.high and plan is not None)
                yield self.env.timeout(self.poll_s)
                self.waiting_high -= int(s.high and plan is not None)
                continue
            if s.high:
                self.interval.privacy_high_pending += 1
            prefill = s.epoch != plan.epoch  # first step, or the chain changed: rebuild the KV caches
            tokens = _context(s) if prefill else 1
            started = self.env.now
            failed = yield from self._step(plan, tokens, prefill)
            if failed is not None:
                self.interval.failed_nodes.add(failed)
                s.epoch = None
                s.failovers += 1
                if s.failovers > MAX_REPREFILLS:
                    status, error = "error", f"node {failed} failed {s.failovers} times"
                    break
                while self.plan is plan and self.env.now < deadline:
                    yield self.env.timeout(self.poll_s)  # wait for the orchestrator's next plan
                continue
            if self.env.now > deadline:
                status, error = "timeout", f"no answer within {self.timeout_s:g} s"
                break
            self._count(s, plan)
            latency = self.env.now - started
            if not prefill:
                self.interval.steps.append((latency, plan.epoch))
                self.steps.append((started - self.t0, latency, plan.epoch))
            s.epoch = plan.epoch
            s.generated += 1
            self.interval.tokens += 1
            if s.first_token_s is None:
                s.first_token_s = self.env.now
        self._finish(s, send, deadline, status, error)

    def abandon(self) -> None:
        """Record every request still under way as timed out (the run ends at its time limit)."""
        for s in list(self.live.values()):
            send = self.t0 + s.request.send_at_s
            self._finish(s, send, send + self.timeout_s, "timeout", f"no answer within {self.timeout_s:g} s")

    def _finish(self, s: _Session, send: float, deadline: float, status: Status, error: str | None) -> None:
        del self.live[s.request.index]
        end = min(self.env.now, deadline)
        self.records.append(
            RequestRecord(
                index=s.request.index,
                privacy=s.request.privacy,
                send_s=send - self.t0,
                first_token_s=None if s.first_token_s is None else s.first_token_s - self.t0,
                end_s=end - self.t0,
                tokens=s.generated,
                status=status,
                error=error,
                epochs=tuple(sorted(s.epochs)),
                nodes_by_block={b: tuple(sorted(n)) for b, n in sorted(s.nodes_by_block.items())},
            )
        )
        if len(self.records) == self._expected and not self.finished.triggered:
            self.finished.succeed()

    def _count(self, s: _Session, plan: Plan) -> None:
        s.epochs.add(plan.epoch)
        for block, node in enumerate(plan.assignment):
            s.nodes_by_block.setdefault(block, set()).add(node)

    def _compliant(self, plan: Plan) -> bool:
        return all(
            plan.assignment[b] in self.trusted for b in self.privacy_blocks if b < len(plan.assignment)
        )

    # ---- one step through the chain --------------------------------------------------------------

    def _step(self, plan: Plan, tokens: int, prefill: bool) -> Generator[simpy.Event, Any, str | None]:
        """Source → each segment's node → source; returns the node that failed, or None."""
        prev, nbytes = self.source, self.input_bytes * tokens
        segments = plan.segments
        for i, seg in enumerate(segments):
            node = self.nodes[seg.node_id]
            if not node.up:
                return seg.node_id
            if prev != seg.node_id:
                yield from self.links.send(prev, seg.node_id, nbytes)
            ok = yield node.submit(plan.epoch, (seg.start, seg.end), tokens if prefill else 0)
            if not ok:
                return seg.node_id
            nxt = self.source if i == len(segments) - 1 else segments[i + 1].node_id
            nbytes = self.blocks[seg.end - 1].out_bytes * (1 if nxt == self.source else tokens)
            if nxt != seg.node_id:
                if nxt != self.source and not self.nodes[nxt].up:
                    return nxt
                on_link = yield from self.links.send(seg.node_id, nxt, nbytes)
                self.interval.transfers.append((seg.node_id, nxt, nbytes, on_link))
            prev = nxt
        return None


def _context(s: _Session) -> int:
    """Tokens a re-prefill must process: the prompt and everything generated so far."""
    return _prompt_tokens(s.request) + s.generated


def _prompt_tokens(request: PlannedRequest) -> int:
    return len(request.prompt.split())
