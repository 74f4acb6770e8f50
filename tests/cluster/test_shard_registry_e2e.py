"""`edgesplit up` with `shards: {fetch: true}`: nodes start without weights, fetch their blocks (and a
standby block on each side) from the orchestrator's registry, verify them, and serve the same text."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from loopback_up import kill_pids, pid_alive

from edgesplit.cluster.launcher import LocalCluster
from edgesplit.cluster.loader import load_cluster
from edgesplit.model.builtin import resolve_model
from edgesplit.transport.node_admin import NodeAdmin

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

EXAMPLE = Path(__file__).parents[2] / "examples" / "mec-3node.yaml"
BODY = {"model": "builtin:llama-tiny", "prompt": "Once upon a time", "max_tokens": 6, "temperature": 0}


@pytest.fixture(scope="module")
def local() -> Iterator[LocalCluster]:
    cluster = load_cluster(EXAMPLE)
    cluster = cluster.model_copy(
        update={"shards": cluster.shards.model_copy(update={"fetch": True, "standby_blocks": 1})}
    )
    lc = LocalCluster(cluster, resolve_model(cluster.model), orchestrator_args=["--interval", "0.5"])
    try:
        lc.start(180)
        yield lc
    finally:
        pids = [c.proc.pid for c in lc.children]
        lc.stop()
        kill_pids([p for p in pids if pid_alive(p)])


async def telemetry(addresses: dict[str, str], tls: object) -> dict[str, object]:
    out = {}
    for node_id, address in addresses.items():
        admin = NodeAdmin(address, tls)  # type: ignore[arg-type]
        try:
            out[node_id] = await admin.telemetry()
        finally:
            await admin.close()
    return out


def test_nodes_fetch_their_blocks_from_the_registry_and_serve(local: LocalCluster) -> None:
    registry = httpx.get(f"{local.plan['http_url']}/v1/shards", timeout=10).json()
    digests = {s["index"]: s["sha256"] for s in registry["shards"]}
    assert len(digests) == registry["num_blocks"] == 6
    reply = httpx.post(f"{local.gateway_url}/v1/completions", json=BODY, timeout=60)
    assert reply.status_code == 200, reply.text
    assert reply.json()["usage"]["completion_tokens"] >= 1
    served: dict[str, set[int]] = {}
    want: dict[str, set[int]] = {}
    for s in local.plan["segments"]:
        served.setdefault(s["node"], set()).update(range(s["start"], s["end"]))
        near = {b for b in (s["start"] - 1, s["end"]) if 0 <= b < 6}
        want.setdefault(s["node"], set()).update(range(s["start"], s["end"]), near)
    deadline = time.monotonic() + 30
    while True:  # standby shards arrive in the background
        snaps = asyncio.run(telemetry(local.addresses, getattr(local, "admin_tls", None)))
        want = {  # an untrusted node's standby set leaves the privacy-critical blocks (0, 1, 5) out
            n: blocks
            | {
                b
                for b in (min(blocks) - 1, max(blocks) + 1)
                if 0 <= b < 6 and (n != "cloud" or b not in (0, 1, 5))
            }
            for n, blocks in served.items()
        }
        if all(want[n] <= set(snaps[n].cached_blocks) for n in served):  # type: ignore[attr-defined]
            break
        assert time.monotonic() < deadline, f"standby not cached: {snaps}"
        time.sleep(0.3)
    for node_id, blocks in served.items():
        cache = local.run_dir / f"node-{node_id}-shards"
        assert (cache / "manifest.json").is_file()
        files = {p.name for p in cache.glob("block_*.safetensors")}
        assert {f"block_{b:04d}.safetensors" for b in blocks} <= files
        assert (local.run_dir / f"node-{node_id}-state" / "highest_epoch").read_text().strip() == str(
            local.plan["epoch"]
        )
