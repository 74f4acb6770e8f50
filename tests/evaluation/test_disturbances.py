"""A scenario's link event reaches both directions of a request: the node agents (SetEmulation) and the
gateway's own first-hop sends (PUT /v1/admin/emulation), measured on a step over real gRPC."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from edgesplit.cluster.loader import parse_cluster
from edgesplit.evaluation.disturbances import Disturbances, EmulationState
from edgesplit.evaluation.scenario import LinkEvent
from edgesplit.gateway.config import GatewayConfig, GatewayNodeConfig
from edgesplit.gateway.text import TextCodec
from edgesplit.transport.base import ChainStep, Hop, Route
from edgesplit.transport.grpc_client import GrpcSegmentClient
from edgesplit.transport.link import LinkSpec

sys.path.insert(0, str(Path(__file__).parents[1] / "gateway"))
sys.path.insert(0, str(Path(__file__).parents[1] / "runtime"))
from fakes import fake_cluster
from gateway_factories import MODEL, ThreadedGateway

pytestmark = pytest.mark.timeout(60)

# n0 is the source (the gateway runs there); n1 serves the whole fake model, so a step crosses n0~n1
# twice: the gateway's send to n1, and n1's reply to the gateway's sink.
CLUSTER = """\
model: builtin:llama-tiny
nodes:
  - {id: n0, source: true, trusted: true}
  - {id: n1, trusted: true}
  - {id: n2, trusted: true}
emulation:
  links:
    - {a: n0, b: n1, bandwidth_mbps: 400, rtt_ms: 2}
    - {a: n1, b: n2, bandwidth_mbps: 1000, rtt_ms: 1}
"""
N_BLOCKS = 4


def link_event(a: str, b: str, bandwidth_mbps: float, rtt_ms: float) -> LinkEvent:
    return LinkEvent(kind="link", at_s=0, a=a, b=b, bandwidth_mbps=bandwidth_mbps, rtt_ms=rtt_ms)


def test_a_link_event_at_the_source_shapes_the_nodes_and_the_gateway_both_ways() -> None:
    from edgesplit.gateway.app import create_app
    from edgesplit.model.builtin import resolve_model

    cluster = parse_cluster(CLUSTER)
    model_dir = resolve_model(MODEL)
    state = EmulationState(cluster)
    client = GrpcSegmentClient(source_node_id="n0", links={"n1": LinkSpec(400e6, 0.002)})

    async def run(gateway_url: str) -> dict[str, float]:
        segments = [(0, N_BLOCKS)] * 3  # each node can serve the whole fake model
        async with fake_cluster(segments, N_BLOCKS) as (_, nodes):
            addresses = {f"n{i}": n.address for i, n in enumerate(nodes)}
            via_n1 = Route(0, (Hop("n1", addresses["n1"], 0, N_BLOCKS),))
            local = SimpleNamespace(addresses=addresses, gateway_url=gateway_url, admin_tls=None)
            disturbances = Disturbances(local, [], state)  # type: ignore[arg-type]

            async def step_s(name: str) -> float:
                started = time.perf_counter()
                await client.run_step(via_n1, ChainStep(name, (1, 2, 3), 0), 10.0)
                return time.perf_counter() - started

            try:
                await step_s("warm")
                before = min([await step_s(f"b{i}") for i in range(3)])
                await disturbances.apply(link_event("n0", "n1", 5, 160))
                after = min([await step_s(f"a{i}") for i in range(3)])
                n0, n1 = (nodes[i].agent.service.emulation.links for i in (0, 1))
                assert (n0["n1"].bandwidth_mbps, n0["n1"].rtt_ms) == (5, 160)
                assert (n1["n0"].bandwidth_mbps, n1["n0"].rtt_ms) == (5, 160)
                assert client.link("n1").spec == LinkSpec(5e6, 0.16)
                # A link away from the source changes the nodes only; the gateway keeps its links.
                await disturbances.apply(link_event("n1", "n2", 10, 30))
                n2 = nodes[2].agent.service.emulation.links
                assert (n2["n1"].bandwidth_mbps, n2["n1"].rtt_ms) == (10, 30)
                assert client.link("n1").spec == LinkSpec(5e6, 0.16)
                assert client.link("n2").spec == LinkSpec()
            finally:
                await client.close()
        return {"before": before, "after": after}

    gateway = GatewayConfig(
        model_name=MODEL,
        model_path=model_dir,
        nodes=[GatewayNodeConfig(id=n.id, trusted=n.trusted, source=n.source) for n in cluster.nodes],
        source_node="n0",
    )
    app = create_app(gateway, client, codec=TextCodec.from_checkpoint(model_dir))
    with ThreadedGateway(app) as gw:
        measured = asyncio.run(run(gw.url))
    # Both halves now cross 160 ms RTT: 80 ms out (the gateway) + 80 ms back (n1) ≥ 160 ms a step;
    # with only the nodes re-shaped, a step would take about 80 ms.
    assert measured["before"] < 0.08, measured
    assert 0.16 <= measured["after"] < 0.16 + 0.1 + measured["before"], measured


def test_kill_and_restart_refuse_unknown_or_running_nodes_and_kill_by_pid(tmp_path: Path) -> None:
    """The public node controls of LocalCluster that node_kill/node_return events use."""
    import subprocess

    from edgesplit.cluster.launcher import Child, LocalCluster
    from edgesplit.errors import UserInputError

    local = LocalCluster(parse_cluster(CLUSTER), tmp_path, run_dir=tmp_path / "run")
    local.addresses["n1"] = "127.0.0.1:1"
    with pytest.raises(UserInputError, match="no process for node 'n9'"):
        local.kill_node("n9")
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )  # its own process group, as the cluster starts every process
    local.children.append(Child("node n1", sleeper, tmp_path / "n1.log"))
    try:
        with pytest.raises(UserInputError, match="still running"):
            local.restart_node("n1")
        assert local.node_process("n1").proc is sleeper
        local.kill_node("n1")
        assert sleeper.returncode == -9
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()


def test_up_trace_player_reshapes_the_gateway_when_a_source_link_changes() -> None:
    """`edgesplit up` replays link traces the same way: the source's links also go to the gateway."""
    from gateway_factories import fake_gateway_app
    from gateway_fakes import ShapedChain

    from edgesplit.cluster.live import TracePlayer
    from edgesplit.model.builtin import resolve_model

    traced = parse_cluster(
        "model: builtin:llama-tiny\n"
        "nodes:\n  - {id: device, source: true, trusted: true}\n  - {id: mec1, trusted: true}\n"
        "  - {id: cloud}\n"
        "emulation:\n  links:\n"
        "    - {a: device, b: mec1, bandwidth_mbps: 400, rtt_ms: 2, trace: [{at_s: 0.2, rtt_ms: 90}]}\n"
        "    - {a: mec1, b: cloud, bandwidth_mbps: 100, rtt_ms: 9, trace: [{at_s: 0.4, rtt_ms: 30}]}\n"
    )
    model_dir = resolve_model(MODEL)
    codec = TextCodec.from_checkpoint(model_dir)
    chain = ShapedChain(vocab=codec.vocab_size)
    with ThreadedGateway(fake_gateway_app(chain, model_dir, codec)) as gw:
        # No node agents listen here: their updates fail (reported), the gateway's must still happen.
        player = TracePlayer(traced, {n.id: "127.0.0.1:1" for n in traced.nodes}, gateway_url=gw.url)
        player.start()
        player.join(timeout=30)
    assert not player.is_alive()
    assert [(t, who) for t, who in player.applied if who == "gateway"] == [(0.2, "gateway")]
    ((links, default),) = chain.replaced  # the mec1~cloud change is not the gateway's
    assert links == {"mec1": LinkSpec(400e6, 0.09)} and default == LinkSpec()


def test_a_paused_cluster_takes_no_cpu_resumes_and_still_stops_by_sigterm(tmp_path: Path) -> None:
    """What the runner does to a cluster started ahead of its turn (pause, resume) and on cleanup."""
    import subprocess

    import psutil

    from edgesplit.cluster.launcher import Child, LocalCluster

    local = LocalCluster(parse_cluster(CLUSTER), tmp_path, run_dir=tmp_path / "run", keep_run_dir=True)
    spinner = subprocess.Popen(
        [sys.executable, "-c", "while True: pass"], start_new_session=True
    )  # busy on purpose: a paused one must not add CPU time
    local.children.append(Child("node n1", spinner, tmp_path / "n1.log"))
    try:
        proc = psutil.Process(spinner.pid)
        local.pause()
        deadline = time.monotonic() + 5
        while proc.status() != psutil.STATUS_STOPPED:
            assert time.monotonic() < deadline, proc.status()
            time.sleep(0.02)
        cpu = proc.cpu_times().user
        time.sleep(0.3)
        assert proc.cpu_times().user == cpu
        local.resume()
        deadline = time.monotonic() + 5
        while proc.cpu_times().user == cpu:
            assert time.monotonic() < deadline, "the resumed process never ran"
            time.sleep(0.02)
        local.pause()
        local.stop(grace_s=5.0)  # paused: it must get the SIGTERM, not wait for the SIGKILL
        assert spinner.returncode == -15
    finally:
        if spinner.poll() is None:
            spinner.kill()
            spinner.wait()
