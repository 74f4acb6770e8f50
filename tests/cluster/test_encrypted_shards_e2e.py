"""`edgesplit up` (mTLS) with `shards: {fetch: true}`: the registry serves encrypted shards, each signed
prepare wraps to every node the keys of exactly its blocks, and the nodes decrypt in memory: the text
is the greedy reference, the caches hold ciphertext only, and the untrusted node never holds nor gets
the key of a privacy-critical block."""

from __future__ import annotations

import json
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from loopback_up import kill_pids, pid_alive

from edgesplit.cluster.launcher import LocalCluster
from edgesplit.cluster.loader import load_cluster
from edgesplit.model.builtin import resolve_model

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

EXAMPLE = Path(__file__).parents[2] / "examples" / "mec-3node.yaml"
PROMPT, N = "Once upon a time", 8
CRITICAL = {0, 1, 5}  # the example's privacy blocks: embedding, layer 0, head (6 blocks)
ENCRYPTED_MAGIC = b"ESHARD1\n"


@pytest.fixture(scope="module")
def local() -> Iterator[LocalCluster]:
    cluster = load_cluster(EXAMPLE)
    cluster = cluster.model_copy(
        update={"shards": cluster.shards.model_copy(update={"fetch": True, "standby_blocks": 1})}
    )
    lc = LocalCluster(cluster, resolve_model(cluster.model))
    try:
        lc.start(180)
        yield lc
    finally:
        pids = [c.proc.pid for c in lc.children]
        lc.stop()
        kill_pids([p for p in pids if pid_alive(p)])


def greedy_reference(prompt: str, n: int) -> str:
    """Greedy text of the whole model in this process (from the checkpoint, not from shards)."""
    from edgesplit.model.chain import SegmentChain
    from edgesplit.model.loader import load_block_model, load_tokenizer

    path = resolve_model("builtin:llama-tiny")
    model: Any = load_block_model(path)
    tokenizer = load_tokenizer(path)
    eos = model.model.generation_config.eos_token_id
    eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
    chain = SegmentChain.from_block_model(model, [(0, model.num_blocks)])
    ids = chain.generate(tokenizer(prompt)["input_ids"], n, eos_token_ids=eos_ids)
    if ids and ids[-1] in eos_ids:
        ids = ids[:-1]
    return str(tokenizer.decode(ids, skip_special_tokens=True))


def signed_prepares(state_dir: Path) -> list[dict[str, object]]:
    """Every plan the orchestrator issued, as signed (read-only from its store)."""
    db = sqlite3.connect(f"file:{state_dir / 'orchestrator.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT plan_json FROM plans ORDER BY epoch").fetchall()
    finally:
        db.close()
    return [json.loads(r[0]) for r in rows]


def test_completion_from_encrypted_fetched_shards_is_the_greedy_text(local: LocalCluster) -> None:
    body = {"model": "builtin:llama-tiny", "prompt": PROMPT, "max_tokens": N, "temperature": 0}
    reply = httpx.post(f"{local.gateway_url}/v1/completions", json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["text"] == greedy_reference(PROMPT, N)
    registry = httpx.get(f"{local.plan['http_url']}/v1/shards", timeout=10).json()
    block = httpx.get(f"{local.plan['http_url']}/v1/shards/blocks/2", timeout=10).content
    assert block.startswith(ENCRYPTED_MAGIC) and registry["num_blocks"] == 6
    keys = local.run_dir / "orchestrator" / "shard_keys.json"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600


def test_node_caches_hold_ciphertext_only(local: LocalCluster) -> None:
    from safetensors.torch import load_file

    files = list(local.run_dir.glob("node-*-shards/block_*.safetensors"))
    assert len(files) >= 6  # every block is on some node
    for path in files:
        assert path.read_bytes().startswith(ENCRYPTED_MAGIC)
        with pytest.raises(Exception):  # noqa: B017 - safetensors' own error types
            load_file(path)


def test_untrusted_node_holds_no_critical_shard_and_got_no_key_for_one(local: LocalCluster) -> None:
    cache = local.run_dir / "node-cloud-shards"
    held = {int(p.name[6:10]) for p in cache.glob("block_*.safetensors")}
    assert held and not held & CRITICAL
    plans = signed_prepares(local.run_dir / "orchestrator")
    assert plans
    for plan in plans:
        keys = plan["meta"]["shards"]["keys"]  # type: ignore[index]
        for node, blocks in keys.items():
            assigned = {
                b
                for s in plan["segments"]  # type: ignore[attr-defined]
                if s["node"] == node
                for b in range(s["start"], s["end"])
            }
            assert {int(b) for b in blocks} == assigned  # exactly its blocks, no other node's
        assert not {int(b) for b in keys.get("cloud", {})} & CRITICAL
        assert all(len(bytes.fromhex(v["key"])) > 32 for v in keys["device"].values())  # wrapped
