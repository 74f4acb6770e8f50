"""The adaptive orchestrator process on a real local cluster: signed deploy, restart without redeploy,
re-planning around a node SIGKILLed while streams run (Δt, T_cool compressed; defaults stay the paper's)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from loopback_up import running_cluster, wait_for

from edgesplit.cluster.launcher import LocalCluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

EXAMPLE = Path(__file__).parents[2] / "examples" / "mec-3node.yaml"
FAST = ["--interval", "0.3", "--cooldown", "1"]


def events(url: str) -> list[dict[str, Any]]:
    text = httpx.get(f"{url}/v1/events", params={"follow": "false"}, timeout=10).text
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


def complete(url: str) -> dict[str, Any]:
    body = {"model": "builtin:llama-tiny", "prompt": "Once upon", "max_tokens": 4, "temperature": 0}
    resp = httpx.post(f"{url}/v1/completions", json=body, timeout=60)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


@pytest.fixture(scope="module")
def local() -> Iterator[LocalCluster]:
    with running_cluster(EXAMPLE, FAST) as lc:
        yield lc


def test_signed_initial_plan_is_committed_and_recorded(local: LocalCluster) -> None:
    plan = httpx.get(f"{local.gateway_url}/v1/plan", timeout=10).json()
    assert plan["epoch"] == 1 == local.plan["epoch"]
    assert [s["node"] for s in plan["segments"]] == [s["node"] for s in local.plan["segments"]]
    committed = [
        e for e in events(local.gateway_url) if e.get("kind") == "decision" and e["outcome"] == "committed"
    ]
    assert committed and committed[0]["new_epoch"] == 1
    assert {"planning", "prepare", "commit"} <= set(committed[0]["phases"])
    assert complete(local.gateway_url)["usage"]["completion_tokens"] == 4


def test_restarted_orchestrator_adopts_the_served_plan(local: LocalCluster) -> None:
    old = next(c for c in local.children if c.name == "orchestrator")
    os.killpg(old.proc.pid, signal.SIGTERM)
    old.proc.wait(timeout=30)
    state = local.run_dir / "orchestrator"
    ready = local.run_dir / "orchestrator-2.ready"
    log = local.run_dir / "orchestrator-2.log"
    args = [str(local.run_dir / "cluster.orchestrator.yaml"), "--gateway", local.gateway_url]
    args += ["--ready-file", str(ready), "--state-dir", str(state), *FAST]
    if not local.insecure:  # the same certificate the first one had: nodes answer only cluster members
        args += ["--tls-dir", str(local.pki_dir)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgesplit.cli.main", "orchestrator", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        adopted = wait_for(
            "the restarted orchestrator", lambda: ready.exists() and json.loads(ready.read_text()), 90
        )
        assert adopted["epoch"] == 1
        assert "adopted epoch 1" in log.read_text()
        assert httpx.get(f"{local.gateway_url}/v1/plan", timeout=10).json()["epoch"] == 1  # no redeploy
        assert complete(local.gateway_url)["usage"]["completion_tokens"] == 4
    finally:
        old.proc = proc  # the fixture's teardown stops it by PID


def stream(url: str, prompt: str, max_tokens: int, first: threading.Event | None = None) -> tuple[str, float]:
    """One streamed greedy completion; returns its text and when it finished (monotonic)."""
    body = {"model": "builtin:llama-tiny", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
    text = []
    with httpx.stream("POST", f"{url}/v1/completions", json={**body, "stream": True}, timeout=90) as resp:
        assert resp.status_code == 200, resp.read()
        for line in resp.iter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                assert "error" not in chunk, chunk
                text.append(chunk["choices"][0]["text"])
                if first is not None:
                    first.set()
    return "".join(text), time.monotonic()


def test_a_killed_node_is_planned_around_and_streams_complete(local: LocalCluster) -> None:
    """mec1 dies (SIGKILL) during 8 streamed generations: after the heartbeat timeout the node-loss
    trigger commits a plan without it, the gateway re-prefills on it, all 8 end with the same text."""
    url = local.gateway_url
    before = httpx.get(f"{url}/v1/plan", timeout=10).json()
    assert "mec1" in {s["node"] for s in before["segments"]}
    prompts = [f"Story {i}:" for i in range(8)]
    tokens = 60
    with ThreadPoolExecutor(8) as pool:
        expected = [t for t, _ in pool.map(lambda p: stream(url, p, tokens), prompts)]
        started = [threading.Event() for _ in prompts]
        running = [pool.submit(stream, url, p, tokens, e) for p, e in zip(prompts, started, strict=True)]
        assert all(e.wait(60) for e in started)
        mec1 = next(c for c in local.children if c.name == "node mec1")
        os.killpg(mec1.proc.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        mec1.proc.wait(timeout=10)
        results = [f.result(timeout=120) for f in running]
    assert [t for t, _ in results] == expected
    assert any(done > killed_at for _, done in results)  # the kill really hit running streams

    after = httpx.get(f"{url}/v1/plan", timeout=10).json()
    assert after["epoch"] > before["epoch"]
    assert "mec1" not in {s["node"] for s in after["segments"]}
    for seg in after["segments"]:  # embedding, layer 0 and head (blocks 0, 1, 5) stay on trusted nodes
        if any(seg["start"] <= b < seg["end"] for b in (0, 1, 5)):
            assert seg["node"] == "device"
    decided = [e for e in events(url) if e.get("kind") == "decision" and e.get("new_epoch") == after["epoch"]]
    assert any(t["kind"] == "node_loss" for e in decided for t in e["triggers"]), decided
