"""Reconfiguration broadcast on real node processes: phase times, failures under load, the cut-over blip,
and KV transfer vs re-prefill.

Run: python benchmarks/bench_reconfig.py rb --model builtin:llama-small --reconfigs 20 --sessions 4 --record
     python benchmarks/bench_reconfig.py kv --model builtin:llama-base --context 512 --repeats 5 --record
     python benchmarks/bench_reconfig.py orch --reconfigs 4 --record

``rb``: two `edgesplit node` processes (``--threads 1``) fed by a shard registry served here (the
orchestrator's router), signed plans alternating the cut point by ``--shift`` blocks. Each
reconfiguration is timed as the orchestrator times it: planning (the planner on this model's problem),
prepare (both nodes load, from their shard cache on disk or fetched from the registry; classified by
whether a node's cached set grew), commit (both nodes, then the gateway's route book). Meanwhile
``--sessions`` generation loops run through the gateway's own decode loop (``Decoder`` over gRPC, with
its cut-over: KV transfer when predicted cheaper, else re-prefill): every request that raised counts
as failed; per-token gaps that span a commit are the blip, compared with the steady gaps. The first
prepare (epoch 1: fresh processes, every block fetched, first model load) is reported apart.

``kv``: a ``--context``-token session on chain A moves to chain B (cut shifted by one block): KV
transfer (export from both nodes, import into both, relayed by the gateway) + one decode step, vs
re-prefill of the whole history on B. Interleaved, medians.

``orch``: the whole system (`edgesplit up` of examples/mec-adaptive.yaml with ``shards.fetch``): the
device link of the MEC node serving the middle blocks collapses to 5 Mbit/s (the other is restored),
``--reconfigs`` times, under 2 streams of requests; per change: disturbance → committed plan as seen
at the gateway (detection by probes + planning + prepare + commit), and the orchestrator's own
planning / prepare / commit phases from its ``/v1/events`` decision.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from harness import record

from edgesplit.gateway.cutover import Cutover, CutoverSettings, cutover_for
from edgesplit.gateway.decoder import DecodeLimits, Decoder, GenerationRequest, GenerationState
from edgesplit.gateway.routes import CommittedPlan, RouteBook
from edgesplit.model.builtin import resolve_model
from edgesplit.node.launcher import NodeProcess, spawn_node, stop_all
from edgesplit.orchestrator.plans import ControlMessage, MessageKind, Plan, assignment_of
from edgesplit.orchestrator.plans import PlanSegment as OrchSegment
from edgesplit.orchestrator.signing import generate_key, public_key_text, sign
from edgesplit.transport.base import ChainStep, Hop, Route
from edgesplit.transport.grpc_client import GrpcSegmentClient
from edgesplit.transport.node_admin import NodeAdmin

NODES = ("n0", "n1")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


@contextlib.contextmanager
def registry_server(model: Path, workdir: Path) -> Iterator[tuple[str, Any]]:
    """The orchestrator's shard registry router on a local uvicorn (own thread)."""
    import uvicorn
    from fastapi import FastAPI

    from edgesplit.orchestrator.http_api import bind, url_of
    from edgesplit.orchestrator.shard_registry import ShardRegistry, prepare_store, shard_router

    registry = ShardRegistry(prepare_store(model, workdir / "registry"))
    app = FastAPI()
    app.include_router(shard_router(registry))
    sock = bind("127.0.0.1:0")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield url_of(sock), registry
    finally:
        server.should_exit = True
        thread.join(10)


def spawn(workdir: Path, key_text: str | None, model: str | None, standby: int) -> list[NodeProcess]:
    nodes = []
    for node_id in NODES:
        config: dict[str, Any] = {"node_id": node_id, "torch_threads": 1}
        if key_text is None:
            config |= {"model": model, "allow_unsigned_plans": True}
        else:
            config |= {"orchestrator_public_key": key_text, "standby_blocks": standby}
            config["shard_cache"] = str(workdir / f"{node_id}-cache")
        path = workdir / f"{node_id}.yaml"
        path.write_text(yaml.safe_dump(config))
        nodes.append(spawn_node(node_id, workdir, config=path))
    for node in nodes:
        node.wait_ready(180)
    return nodes


def route_of(epoch: int, cut: int, blocks: int, addresses: list[str]) -> Route:
    return Route(epoch, (Hop("n0", addresses[0], 0, cut), Hop("n1", addresses[1], cut, blocks)))


def planning_s(model: Path, repeats: int = 5) -> float:
    """The planner's solve time on this model's 2-node problem (the orchestrator's planning phase)."""
    from edgesplit.orchestrator.cluster_facts import block_costs
    from edgesplit.orchestrator.planner import parse_problem, solve

    blocks = block_costs(model)
    problem = {
        "blocks": [
            {
                "name": b.name,
                "work_ms": b.decode_s * 1e3,
                "param_bytes": b.param_bytes,
                "out_bytes": b.out_bytes,
            }
            for b in blocks
        ],
        "nodes": [{"id": n, "speed": 1.0, "mem_bytes": 16 * 2**30, "trusted": True} for n in NODES],
        "links": [{"a": "n0", "b": "n1", "bandwidth_mbps": 400, "rtt_ms": 2.0}],
        "source": "n0",
        "privacy": "none",
    }
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        solve(parse_problem(problem), "auto")
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def run_rb(args: argparse.Namespace) -> dict[str, Any]:
    model = resolve_model(args.model)
    key = generate_key()
    workdir = Path(tempfile.mkdtemp(prefix="bench-reconfig-"))
    plan_s = planning_s(model)
    with registry_server(model, workdir) as (url, registry):
        blocks = registry.num_blocks
        offer = {"registry": url, "sha256": {str(i): h for i, h in registry.digests().items()}}
        nodes = spawn(workdir, public_key_text(key), None, args.standby)
        admins = [NodeAdmin(n.wait_ready(1)) for n in nodes]
        addresses = [a.address for a in admins]
        client = GrpcSegmentClient()
        book = RouteBook(frozenset(NODES), frozenset())
        decoder = Decoder(client, book, frozenset(), DecodeLimits(request_timeout_s=120, step_timeout_s=60))
        phases: list[dict[str, Any]] = []
        try:

            async def reconfigure(epoch: int, cut: int) -> None:
                segs = [OrchSegment("n0", 0, cut), OrchSegment("n1", cut, blocks)]
                plan = Plan(epoch, assignment_of(segs), meta={"shards": offer})
                before = [await a.telemetry() for a in admins]
                t0 = time.perf_counter()
                prep = sign(ControlMessage(MessageKind.PREPARE, epoch, plan), key)
                await asyncio.gather(*(a.prepare_raw(prep.payload, prep.signature) for a in admins))
                t1 = time.perf_counter()
                com = sign(ControlMessage(MessageKind.COMMIT, epoch), key)
                await asyncio.gather(
                    *(a.commit(epoch, signed=com.payload, signature=com.signature) for a in admins)
                )
                book.commit(CommittedPlan(route_of(epoch, cut, blocks, addresses)))
                t2 = time.perf_counter()
                need = [range(0, cut), range(cut, blocks)]
                fetched = any(not set(r) <= b.cached_blocks for r, b in zip(need, before, strict=True))
                phases.append(
                    {"epoch": epoch, "prepare_s": t1 - t0, "commit_s": t2 - t1, "fetched": fetched, "at": t2}
                )
                if epoch > 1:  # release the superseded epoch once in-flight steps are done
                    await asyncio.sleep(args.release_delay)
                    rel = sign(ControlMessage(MessageKind.RELEASE, epoch - 1), key)
                    await asyncio.gather(
                        *(a.release(epoch - 1, signed=rel.payload, signature=rel.signature) for a in admins)
                    )

            cuts = [blocks // 2, blocks // 2 + args.shift]
            await reconfigure(1, cuts[0])
            stop = asyncio.Event()
            results: list[dict[str, Any]] = []
            rng = random.Random(7)

            async def session_loop(index: int) -> None:
                while not stop.is_set():
                    prompt = tuple(rng.randrange(3, 200) for _ in range(args.prompt_tokens))
                    stamps: list[float] = []
                    ok = True
                    try:
                        gen = decoder.generate(GenerationRequest(prompt, args.max_tokens), GenerationState())
                        async for _ in gen:
                            stamps.append(time.perf_counter())
                    except Exception as exc:
                        ok = False
                        print(f"  request failed: {type(exc).__name__}: {exc}", flush=True)
                    results.append({"ok": ok, "stamps": stamps})

            loops = [asyncio.create_task(session_loop(i)) for i in range(args.sessions)]
            await asyncio.sleep(args.period)
            steady_until = time.perf_counter()
            for k in range(args.reconfigs):
                await reconfigure(k + 2, cuts[(k + 1) % 2])
                await asyncio.sleep(args.period)
            stop.set()
            await asyncio.gather(*loops)
            await decoder.drain()
        finally:
            await client.close()
            for a in admins:
                await a.close()
            stop_all(nodes)
    commits = [p["at"] for p in phases[1:]]
    steady: list[float] = []
    blip: list[float] = []
    pre: list[float] = []
    for r in results:
        for a, b in zip(r["stamps"], r["stamps"][1:], strict=False):
            spans = any(a < c <= b for c in commits)
            (blip if spans else steady).append(b - a)
            if b <= steady_until:
                pre.append(b - a)
    moved = phases[1:]
    return {
        "model": args.model,
        "blocks": blocks,
        "reconfigurations": len(moved),
        "requests": len(results),
        "failed": sum(not r["ok"] for r in results),
        "planning_ms": plan_s * 1e3,
        "first_prepare_cold_ms": phases[0]["prepare_s"] * 1e3,
        "prepare_ms_p50_fetch": statistics.median(
            [p["prepare_s"] * 1e3 for p in moved if p["fetched"]] or [float("nan")]
        ),
        "prepare_ms_p50_disk": statistics.median(
            [p["prepare_s"] * 1e3 for p in moved if not p["fetched"]] or [float("nan")]
        ),
        "reconfigs_that_fetched": sum(p["fetched"] for p in moved),
        "commit_ms_p50": statistics.median(p["commit_s"] * 1e3 for p in moved),
        "trigger_to_commit_ms_p50": plan_s * 1e3
        + statistics.median((p["prepare_s"] + p["commit_s"]) * 1e3 for p in moved),
        "token_gap_ms_steady_p50": pct(steady, 0.5) * 1e3,
        "token_gap_ms_steady_p99": pct(steady, 0.99) * 1e3,
        "token_gap_ms_before_any_reconfig_p99": pct(pre, 0.99) * 1e3,
        "token_gap_ms_cutover_p50": pct(blip, 0.5) * 1e3,
        "token_gap_ms_cutover_p99": pct(blip, 0.99) * 1e3,
        "token_gap_ms_cutover_max": max(blip) * 1e3 if blip else float("nan"),
        "cutover_gaps": len(blip),
        "kv_transfers": decoder.cutover.stats.transfers,
        "reprefills_at_cutover": decoder.cutover.stats.reprefills,
        "kv_transfer_failures": decoder.cutover.stats.failures,
    }


async def run_kv(args: argparse.Namespace) -> dict[str, Any]:
    model = resolve_model(args.model)
    workdir = Path(tempfile.mkdtemp(prefix="bench-kv-"))
    nodes = spawn(workdir, None, str(model), 0)
    admins = [NodeAdmin(n.wait_ready(1)) for n in nodes]
    addresses = [a.address for a in admins]
    client = GrpcSegmentClient()
    from edgesplit.cluster.roles import num_blocks_of
    from edgesplit.wire.messages import PlanSegment, PlanSpec

    blocks = num_blocks_of(model)
    cut = blocks // 2
    routes = [route_of(1, cut, blocks, addresses), route_of(2, cut + 1, blocks, addresses)]
    try:
        for route in routes:
            spec = PlanSpec(route.epoch, tuple(PlanSegment(h.node_id, h.start, h.end) for h in route.hops))
            await asyncio.gather(*(a.prepare(spec) for a in admins))
            await asyncio.gather(*(a.commit(route.epoch) for a in admins))
        mover = cutover_for(client, lambda: ())
        assert isinstance(mover, Cutover)
        mover.settings = CutoverSettings(min_tokens=1, timeout_s=120)
        rng = random.Random(3)
        history = tuple(rng.randrange(3, 1000) for _ in range(args.context))
        kv_s, kv_bytes, reprefill_s, same = [], [], [], []
        for rep in range(args.repeats + 1):
            sid = f"s{rep}"
            first = await client.run_step(routes[0], ChainStep(sid, history, 0), 120)
            # (a) KV transfer to chain B, then the next decode step there.
            t0 = time.perf_counter()
            moved = await mover.move(routes[0], routes[1], sid, f"{sid}-kv", len(history))
            assert moved == len(history), "KV transfer failed"
            a = await client.run_step(routes[1], ChainStep(f"{sid}-kv", (first.token_id,), len(history)), 120)
            t1 = time.perf_counter()
            # (b) re-prefill the whole history (+ the new token) on chain B.
            b = await client.run_step(routes[1], ChainStep(f"{sid}-rp", (*history, first.token_id), 0), 120)
            t2 = time.perf_counter()
            for s in (sid, f"{sid}-kv", f"{sid}-rp"):
                await client.end_session(routes[0] if s == sid else routes[1], s)
            if rep == 0:
                continue  # warm-up
            kv_s.append(t1 - t0)
            reprefill_s.append(t2 - t1)
            kv_bytes.append(mover.stats.last_transfer_bytes)
            same.append(a.token_id == b.token_id)
    finally:
        await client.close()
        for a in admins:
            await a.close()
        stop_all(nodes)
    return {
        "model": args.model,
        "context_tokens": args.context,
        "kv_transfer_plus_step_ms_p50": statistics.median(kv_s) * 1e3,
        "reprefill_ms_p50": statistics.median(reprefill_s) * 1e3,
        "speedup_reprefill_over_kv": statistics.median(reprefill_s) / statistics.median(kv_s),
        "kv_bytes": kv_bytes[0],
        "same_next_token": all(same),
        "repeats": args.repeats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("rb", "kv", "orch"))
    parser.add_argument("--model", default="builtin:llama-small")
    parser.add_argument("--reconfigs", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--prompt-tokens", type=int, default=24)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--period", type=float, default=1.5, help="seconds between reconfigurations")
    parser.add_argument("--release-delay", type=float, default=0.5)
    parser.add_argument("--shift", type=int, default=1, help="blocks the cut moves (standby covers 1)")
    parser.add_argument("--standby", type=int, default=1)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cooldown-wait", type=float, default=6.0, help="orch: seconds after each change")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    if args.part == "orch":
        from reconfig_orch import run_orch

        figures = run_orch(args)
    else:
        figures = asyncio.run(run_rb(args) if args.part == "rb" else run_kv(args))
    for name, value in figures.items():
        print(f"{name:40s} {value:.3f}" if isinstance(value, float) else f"{name:40s} {value}")
    if args.record:
        print("recorded", record(f"reconfig_{args.part}", figures))


if __name__ == "__main__":
    main()
