"""The orchestrator process shell against fake nodes: at start it waits (bounded) for the nodes and
fails loudly, naming them, when none answers; after a change it releases the old epoch only on the
nodes that held it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from orch_world import mec_world

from edgesplit.errors import NodeUnavailableError
from edgesplit.orchestrator.controller import AdaptiveController
from edgesplit.orchestrator.core import OrchestratorCore
from edgesplit.orchestrator.service import OrchestratorService, ServiceSettings
from edgesplit.orchestrator.signing import generate_key
from edgesplit.orchestrator.split_revision import SplitRevision
from edgesplit.orchestrator.store import OrchestratorStore
from edgesplit.wire.messages import TelemetrySnapshot


@dataclass
class FakeNode:
    """Answers the control calls the shell makes (or refuses them all) and records them."""

    node_id: str
    calls: list[tuple[str, str, int]]
    reachable: bool = True
    seq: int = 0
    epochs: list[int] = field(default_factory=list)

    def _check(self) -> None:
        if not self.reachable:
            raise NodeUnavailableError(f"{self.node_id}: failed to connect to all addresses\nmore detail")

    async def telemetry(self, timeout_s: float, peers: dict[str, str]) -> TelemetrySnapshot:
        self._check()
        self.seq += 1
        return TelemetrySnapshot(self.node_id, 0.1, 1, -1.0, uptime_s=float(self.seq), seq=self.seq)

    async def prepare_raw(self, payload: bytes, signature: bytes, timeout_s: float) -> None:
        self._check()
        self.calls.append(("prepare", self.node_id, 0))

    async def commit(self, epoch: int, timeout_s: float, payload: bytes, signature: bytes) -> None:
        self._check()
        self.calls.append(("commit", self.node_id, epoch))

    async def release(self, epoch: int, timeout_s: float, payload: bytes, signature: bytes) -> None:
        self._check()
        self.calls.append(("release", self.node_id, epoch))

    async def close(self) -> None:
        pass


def make_service(
    tmp_path: Path, reachable: dict[str, bool], settings: ServiceSettings
) -> tuple[OrchestratorService, list[tuple[str, str, int]]]:
    world = mec_world(seed=3)
    store = OrchestratorStore(tmp_path / "o.sqlite")
    sr = SplitRevision()
    controller = AdaptiveController(world.blocks, world.facts(), sr.plan, sr.evaluate, store)
    core = OrchestratorCore(controller, store, generate_key())
    service = OrchestratorService(
        core,
        world.blocks,
        {n: f"127.0.0.1:{9000 + i}" for i, n in enumerate(sorted(reachable))},
        world.source,
        gateway_url=None,
        settings=settings,
        echo=lambda line: None,
    )
    calls: list[tuple[str, str, int]] = []
    service._admins = {n: FakeNode(n, calls, ok) for n, ok in reachable.items()}  # type: ignore[dict-item]
    return service, calls


def test_no_node_answering_at_start_is_one_error_naming_every_node(tmp_path: Path) -> None:
    settings = ServiceSettings(start_timeout_s=0.3)
    service, _ = make_service(tmp_path, {"device": False, "mec1": False, "mec2": False}, settings)

    async def main() -> None:
        await service._first_reports(asyncio.Event())

    with pytest.raises(NodeUnavailableError) as info:
        asyncio.run(main())
    message = str(info.value)
    assert message.startswith("the orchestrator reached no node within 0.3 s: device at 127.0.0.1:9000 (")
    for node, port in (("mec1", 9001), ("mec2", 9002)):
        assert f"{node} at 127.0.0.1:{port} ({node}: failed to connect to all addresses)" in message
    assert "\n" not in message


def test_start_goes_ahead_without_a_silent_node_after_the_grace(tmp_path: Path) -> None:
    settings = ServiceSettings(start_timeout_s=30.0, start_grace_s=0.2)
    service, _ = make_service(tmp_path, {"device": True, "mec1": True, "mec2": False}, settings)

    async def main() -> dict[str, TelemetrySnapshot] | None:
        return await asyncio.wait_for(service._first_reports(asyncio.Event()), 10)

    reports = asyncio.run(main())
    assert reports is not None and set(reports) == {"device", "mec1"}


def test_a_stop_while_waiting_for_the_nodes_ends_the_wait(tmp_path: Path) -> None:
    service, _ = make_service(tmp_path, {"device": False}, ServiceSettings(start_timeout_s=30.0))

    async def main() -> dict[str, TelemetrySnapshot] | None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.2, stop.set)
        return await asyncio.wait_for(service._first_reports(stop), 10)

    assert asyncio.run(main()) is None


def test_the_old_epoch_is_released_only_on_the_nodes_that_held_it(tmp_path: Path) -> None:
    service, calls = make_service(
        tmp_path, {"device": True, "mec1": True, "mec2": True}, ServiceSettings(release_delay_s=0.0)
    )
    world = mec_world(seed=3)
    core = service.core

    async def main() -> None:
        first = core.start(-100.0, {}, world.measure(None))
        await service._roll_out(first)
        old = core.controller.plan
        assert old is not None and old.epoch == 1
        # The middle segment's MEC loses its link to the device: the next plan moves to the other one.
        middle = old.assignment[2]
        world.links[tuple(sorted(("device", middle)))].bandwidth_bps = 5e6  # type: ignore[index]
        for t in range(1, 30):
            step = core.tick(float(t), world.measure(core.controller.plan))
            if step.message is not None:
                await service._roll_out(step)
                break
        await asyncio.gather(*service._tasks)

    asyncio.run(main())
    plans = [e for e in core.store.events() if e.outcome.value == "committed"]
    assert [e.new_epoch for e in plans] == [1, 2], [(e.reason, e.outcome) for e in plans]
    old_nodes = set(plans[0].chosen.assignment)  # type: ignore[union-attr]
    new_nodes = set(plans[1].chosen.assignment)  # type: ignore[union-attr]
    assert new_nodes - old_nodes, (old_nodes, new_nodes)  # the premise: a node new to the plan
    assert {n for kind, n, e in calls if kind == "commit" and e == 2} >= new_nodes
    assert {n for kind, n, e in calls if kind == "release" and e == 1} == old_nodes
