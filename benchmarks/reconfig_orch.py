"""``bench_reconfig.py orch``: reconfigurations of the real adaptive orchestrator on `edgesplit up`.

Run: python benchmarks/bench_reconfig.py orch --reconfigs 4 --record   (see bench_reconfig.py)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from edgesplit.model.builtin import resolve_model
from edgesplit.transport.node_admin import NodeAdmin


def run_orch(args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    from edgesplit.cluster.launcher import LocalCluster
    from edgesplit.cluster.loader import load_cluster
    from edgesplit.cluster.roles import node_emulation
    from edgesplit.node.config import EmulationConfig

    example = Path(__file__).parents[1] / "examples" / "mec-adaptive.yaml"
    cluster = load_cluster(example)
    cluster = cluster.model_copy(
        update={"shards": cluster.shards.model_copy(update={"fetch": True, "standby_blocks": args.standby})}
    )
    lc = LocalCluster(
        cluster, resolve_model(cluster.model), orchestrator_args=["--interval", "0.2", "--cooldown", "4"]
    )
    url = lc.start(300)
    sections = {n.id: node_emulation(cluster, n.id) for n in cluster.nodes}
    stop = threading.Event()
    outcomes: list[bool] = []

    def load() -> None:
        body = {"model": cluster.model, "prompt": "Once upon a time", "max_tokens": 8, "temperature": 0}
        while not stop.is_set():
            try:
                ok = httpx.post(f"{url}/v1/completions", json=body, timeout=120).status_code == 200
            except httpx.HTTPError:
                ok = False
            outcomes.append(ok)

    def set_link(a: str, b: str, mbps: float, rtt_ms: float) -> None:
        for me, peer in ((a, b), (b, a)):
            sections[me]["links"][peer] = {"bandwidth_mbps": mbps, "rtt_ms": rtt_ms}

        async def apply() -> None:
            for node_id in (a, b):
                admin = NodeAdmin(lc.addresses[node_id], lc.admin_tls)
                try:
                    await admin.set_emulation(EmulationConfig.model_validate(sections[node_id]))
                finally:
                    await admin.close()

        asyncio.run(apply())

    def plan() -> dict[str, Any]:
        return dict(httpx.get(f"{url}/v1/plan", timeout=10).json())

    def committed(epoch: int) -> dict[str, Any] | None:
        text = httpx.get(f"{url}/v1/events", params={"follow": "false"}, timeout=10).text
        for line in text.splitlines():
            if line.startswith("data: {"):
                e = json.loads(line[6:])
                if (
                    e.get("kind") == "decision"
                    and e.get("outcome") == "committed"
                    and e.get("new_epoch") == epoch
                ):
                    return dict(e)
        return None

    threads = [threading.Thread(target=load, daemon=True) for _ in range(2)]
    changes: list[dict[str, float]] = []
    try:
        for th in threads:
            th.start()
        time.sleep(5)
        for _ in range(args.reconfigs):
            before = plan()
            middle = next(s["node"] for s in before["segments"] if s["start"] <= 2 < s["end"])
            other = "mec2" if middle == "mec1" else "mec1"
            set_link("device", other, 400.0, 2.0)
            t0 = time.perf_counter()
            set_link("device", middle, 5.0, 150.0)
            deadline = t0 + 60
            while plan()["epoch"] == before["epoch"] and time.perf_counter() < deadline:
                time.sleep(0.05)
            seen_s = time.perf_counter() - t0
            after = plan()
            event = committed(after["epoch"]) or {}
            phases = event.get("phases", {})
            changes.append(
                {
                    "to_commit_s": seen_s,
                    "planning_s": phases.get("planning", float("nan")),
                    "prepare_s": phases.get("prepare", float("nan")),
                    "commit_s": phases.get("commit", float("nan")),
                    "moved": float(after["epoch"] != before["epoch"]),
                }
            )
            print("  change:", changes[-1], flush=True)
            time.sleep(args.cooldown_wait)
    finally:
        stop.set()
        for th in threads:
            th.join(130)
        lc.stop()

    def med(key: str) -> float:
        return (
            statistics.median(c[key] for c in changes if c["moved"])
            if any(c["moved"] for c in changes)
            else float("nan")
        )

    return {
        "example": f"mec-adaptive.yaml (shards.fetch, standby_blocks {args.standby})",
        "changes": len(changes),
        "changes_committed": sum(int(c["moved"]) for c in changes),
        "requests": len(outcomes),
        "failed": outcomes.count(False),
        "disturbance_to_commit_s_p50": med("to_commit_s"),
        "planning_ms_p50": med("planning_s") * 1e3,
        "prepare_ms_p50": med("prepare_s") * 1e3,
        "commit_ms_p50": med("commit_s") * 1e3,
        "detection_s_p50": med("to_commit_s") - med("planning_s") - med("prepare_s") - med("commit_s"),
    }
