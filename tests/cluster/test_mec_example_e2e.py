"""One `edgesplit up` of examples/mec-3node.yaml, shared by every test of this module: mTLS (the default)
and `shards: {fetch: true, standby_blocks: 1}`, so nodes start without weights, fetch their encrypted
blocks (and a standby block each side) from the orchestrator's registry and decrypt them in memory.

What is checked: every node speaks only mTLS with the trust its certificate declares; the text is the
greedy reference; the caches hold ciphertext and the blocks the plan (and standby) gives each node; the
untrusted node never holds nor gets the key of a privacy-critical block; a plan preview through the
gateway deploys nothing. No test here changes the cluster (no plan, load or link change), so one start-up
of its five processes serves them all.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from loopback_up import kill_pids, pid_alive

from edgesplit.cluster.launcher import LocalCluster
from edgesplit.cluster.loader import load_cluster
from edgesplit.errors import EdgesplitError
from edgesplit.model.builtin import resolve_model
from edgesplit.security.pki import Role, load_cert, verify_issued
from edgesplit.transport.node_admin import NodeAdmin

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

EXAMPLE = Path(__file__).parents[2] / "examples" / "mec-3node.yaml"
MODEL = "builtin:llama-tiny"
N_BLOCKS = 6
CRITICAL = {0, 1, 5}  # the example's privacy blocks: embedding, layer 0, head
ENCRYPTED_MAGIC = b"ESHARD1\n"
PROMPT, N = "Once upon a time", 8


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


async def _ping(admin: NodeAdmin) -> bytes:
    try:
        return await admin.ping(b"up?", timeout_s=5.0)
    finally:
        await admin.close()


async def _telemetry(local: LocalCluster) -> dict[str, Any]:
    out = {}
    for node_id, address in local.addresses.items():
        admin = NodeAdmin(address, local.admin_tls)
        try:
            out[node_id] = await admin.telemetry()
        finally:
            await admin.close()
    return out


def greedy_reference(prompt: str, n: int) -> str:
    """Greedy text of the whole model in this process (from the checkpoint, not from shards)."""
    from edgesplit.model.chain import SegmentChain
    from edgesplit.model.loader import load_block_model, load_tokenizer

    path = resolve_model(MODEL)
    model: Any = load_block_model(path)
    tokenizer = load_tokenizer(path)
    eos = model.model.generation_config.eos_token_id
    eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
    chain = SegmentChain.from_block_model(model, [(0, model.num_blocks)])
    ids = chain.generate(tokenizer(prompt)["input_ids"], n, eos_token_ids=eos_ids)
    if ids and ids[-1] in eos_ids:
        ids = ids[:-1]
    return str(tokenizer.decode(ids, skip_special_tokens=True))


def signed_prepares(state_dir: Path) -> list[dict[str, Any]]:
    """Every plan the orchestrator issued, as signed (read-only from its store)."""
    db = sqlite3.connect(f"file:{state_dir / 'orchestrator.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT plan_json FROM plans ORDER BY epoch").fetchall()
    finally:
        db.close()
    return [json.loads(r[0]) for r in rows]


def blocks_by_node(segments: list[dict[str, Any]]) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for s in segments:
        out.setdefault(s["node"], set()).update(range(s["start"], s["end"]))
    return out


def test_nodes_refuse_plain_grpc_and_serve_over_mtls_with_their_certified_trust(local: LocalCluster) -> None:
    assert local.admin_tls is not None
    ca = load_cert(local.pki_dir / "ca.crt")
    for node in local.cluster.nodes:  # each node's certificate carries the trust the file declares
        who = verify_issued(load_cert(local.pki_dir / f"{node.id}.crt"), ca)
        assert (who.name, who.role, who.trusted) == (node.id, Role.NODE, node.trusted)
    for node_id, address in local.addresses.items():
        assert asyncio.run(_ping(NodeAdmin(address, local.admin_tls))) == b"up?", node_id
        with pytest.raises(EdgesplitError):
            asyncio.run(_ping(NodeAdmin(address)))


def test_completion_from_encrypted_fetched_shards_is_the_greedy_text(local: LocalCluster) -> None:
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": N, "temperature": 0}
    reply = httpx.post(f"{local.gateway_url}/v1/completions", json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["text"] == greedy_reference(PROMPT, N)
    registry = httpx.get(f"{local.orchestrator_url}/v1/shards", timeout=10).json()
    assert registry["num_blocks"] == N_BLOCKS
    assert len({s["index"]: s["sha256"] for s in registry["shards"]}) == N_BLOCKS
    block = httpx.get(f"{local.orchestrator_url}/v1/shards/blocks/2", timeout=10).content
    assert block.startswith(ENCRYPTED_MAGIC)
    keys = local.run_dir / "orchestrator" / "shard_keys.json"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600


def test_nodes_cache_their_blocks_and_standby_neighbours_as_ciphertext(local: LocalCluster) -> None:
    from safetensors.torch import load_file

    served = blocks_by_node(local.plan["segments"])
    want = {  # one standby block each side; an untrusted node's standby set leaves critical blocks out
        n: blocks
        | {
            b
            for b in (min(blocks) - 1, max(blocks) + 1)
            if 0 <= b < N_BLOCKS and (n != "cloud" or b not in CRITICAL)
        }
        for n, blocks in served.items()
    }
    deadline = time.monotonic() + 30
    while True:  # standby shards arrive in the background
        snaps = asyncio.run(_telemetry(local))
        if all(want[n] <= set(snaps[n].cached_blocks) for n in served):
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
    files = list(local.run_dir.glob("node-*-shards/block_*.safetensors"))
    assert len(files) >= N_BLOCKS  # every block is on some node
    for path in files:
        assert path.read_bytes().startswith(ENCRYPTED_MAGIC)
        with pytest.raises(Exception):  # noqa: B017 - safetensors' own error types
            load_file(path)


def test_untrusted_node_holds_no_critical_shard_and_got_no_key_for_one(local: LocalCluster) -> None:
    held = {int(p.name[6:10]) for p in (local.run_dir / "node-cloud-shards").glob("block_*.safetensors")}
    assert held and not held & CRITICAL
    plans = signed_prepares(local.run_dir / "orchestrator")
    assert plans
    for plan in plans:
        keys = plan["meta"]["shards"]["keys"]
        for node, blocks in keys.items():  # exactly its blocks, no other node's
            assert {int(b) for b in blocks} == blocks_by_node(plan["segments"]).get(node, set())
        assert not {int(b) for b in keys.get("cloud", {})} & CRITICAL
        assert all(len(bytes.fromhex(v["key"])) > 32 for v in keys["device"].values())  # wrapped


def test_preview_through_the_gateway_plans_without_deploying(local: LocalCluster) -> None:
    assert local.orchestrator_url.startswith("http://127.0.0.1:")
    health = httpx.get(f"{local.orchestrator_url}/healthz", timeout=10).json()
    assert health == {"status": "ok", "epoch": 1}
    before = httpx.get(f"{local.gateway_url}/v1/plan", timeout=10).json()
    resp = httpx.get(f"{local.gateway_url}/v1/plan/preview", params={"solver": "exact"}, timeout=60)
    assert resp.status_code == 200, resp.text
    plan = resp.json()
    blocks = before["segments"][-1]["end"]
    assert [b for s in plan["segments"] for b in range(s["start"], s["end"])] == list(range(blocks))
    assert sorted(plan["nodes_considered"]) == ["cloud", "device", "mec1"]
    # privacy "high" by default: embedding, layer 0 and head never on the untrusted cloud node
    assert all(plan["assignment"][b] != "cloud" for b in (0, 1, blocks - 1))
    direct = httpx.get(f"{local.orchestrator_url}/v1/plan/preview", params={"privacy": "none"}, timeout=60)
    assert direct.status_code == 200 and direct.json()["privacy"] == "none"
    after = httpx.get(f"{local.gateway_url}/v1/plan", timeout=10).json()
    assert after["epoch"] == before["epoch"] == 1
