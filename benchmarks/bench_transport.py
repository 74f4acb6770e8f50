"""The data plane on real processes: 3-node loopback vs in-process, per-hop overhead, batching.

Run: python benchmarks/bench_transport.py --model builtin:llama-base --new-tokens 24 --repeats 3 --record

(a) tokens/s of a 3-node loopback chain (real `edgesplit node` processes, no emulated delays) over
    tokens/s of one in-process segment, interleaved, medians; (b) per-step added latency of the chain
    (wall time minus the compute every node reported) per message, p50/p99, and a zero-payload Ping
    round trip on the same stack; (c) aggregate decode tokens/s with 1, 4 and 16 concurrent sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from harness import interleaved, record

from edgesplit.model.builtin import resolve_model
from edgesplit.model.chain import SegmentChain
from edgesplit.model.loader import load_block_model
from edgesplit.node.launcher import NodeProcess, spawn_node, stop_all
from edgesplit.transport.base import ChainStep, Hop, Route
from edgesplit.transport.grpc_client import GrpcSegmentClient
from edgesplit.transport.node_admin import NodeAdmin

PROMPT = [11, 42, 7, 300, 5, 99, 1234, 8, 17, 256, 31, 77, 4, 900, 23, 64]


def thirds(n_blocks: int) -> list[tuple[int, int]]:
    a, b = n_blocks // 3, 2 * n_blocks // 3
    return [(0, a), (a, b), (b, n_blocks)]


async def decode_session(client: GrpcSegmentClient, route: Route, sid: str, new_tokens: int) -> list[float]:
    """Prefill then ``new_tokens - 1`` decode steps; returns each decode step's wall time."""
    result = await client.run_step(route, ChainStep(sid, tuple(PROMPT), 0), 120.0)
    position, token, times = len(PROMPT), result.token_id, []
    for _ in range(new_tokens - 1):
        t0 = time.perf_counter()
        result = await client.run_step(route, ChainStep(sid, (token,), position), 120.0)
        times.append(time.perf_counter() - t0)
        position, token = position + 1, result.token_id
    await client.end_session(route, sid)
    return times


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:llama-base")
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads per node and in-process")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model_dir = resolve_model(args.model)
    block_model = load_block_model(model_dir)
    n_blocks = block_model.num_blocks
    segments = thirds(n_blocks)
    chain = SegmentChain.from_block_model(block_model, [(0, n_blocks)])
    workdir = Path(tempfile.mkdtemp(prefix="bench-transport-"))
    threads = ["--threads", str(args.threads)]
    nodes: list[NodeProcess] = [
        spawn_node(f"n{i}", workdir, model=str(model_dir), segments=[seg], extra_args=threads)
        for i, seg in enumerate(segments)
    ]
    loop = asyncio.new_event_loop()
    try:
        hops = tuple(
            Hop(n.node_id, n.wait_ready(600), s, e) for n, (s, e) in zip(nodes, segments, strict=True)
        )
        route = Route(0, hops)
        client = GrpcSegmentClient()
        admin = NodeAdmin(hops[0].address)
        counter = iter(range(10**9))

        def inproc() -> None:
            chain.generate(PROMPT, args.new_tokens, session_id=f"i{next(counter)}")

        def loopback() -> None:
            loop.run_until_complete(decode_session(client, route, f"g{next(counter)}", args.new_tokens))

        # (a) whole generations, interleaved
        runs = interleaved({"inproc": inproc, "loopback": loopback}, repeats=args.repeats, warmup=1)
        tps = {name: args.new_tokens / m.median_s for name, m in runs.items()}
        ratio = tps["loopback"] / tps["inproc"]
        print(f"(a) tokens/s {tps}, ratio {ratio:.3f}", flush=True)

        # (b) per-step added latency: wall time minus the compute the nodes reported, per message
        async def overhead_samples(steps: int) -> tuple[list[float], list[float]]:
            sid = f"o{next(counter)}"
            result = await client.run_step(route, ChainStep(sid, tuple(PROMPT), 0), 120.0)
            position, token, added, walls = len(PROMPT), result.token_id, [], []
            for _ in range(steps):
                t0 = time.perf_counter()
                result = await client.run_step(route, ChainStep(sid, (token,), position), 120.0)
                wall = time.perf_counter() - t0
                compute = sum(t.compute_s + t.queue_s for t in result.timings)
                added.append(
                    (wall - compute) / (len(hops) + 1)
                )  # messages: client->n0, n0->n1, n1->n2, n2->sink
                walls.append(wall)
                position, token = position + 1, result.token_id
            await client.end_session(route, sid)
            return added, walls

        added, walls = loop.run_until_complete(overhead_samples(60))

        async def pings(n: int) -> list[float]:
            out = []
            for _ in range(n):
                t0 = time.perf_counter()
                await admin.ping(b"")
                out.append(time.perf_counter() - t0)
            return out

        loop.run_until_complete(pings(20))
        ping = loop.run_until_complete(pings(300))

        # (c) aggregate tokens/s with concurrent sessions
        async def concurrent(sessions: int) -> float:
            t0 = time.perf_counter()
            await asyncio.gather(
                *(
                    decode_session(client, route, f"c{next(counter)}", args.new_tokens)
                    for _ in range(sessions)
                )
            )
            return sessions * args.new_tokens / (time.perf_counter() - t0)

        aggregate = {}
        for sessions in (1, 4, 16):
            samples = [loop.run_until_complete(concurrent(sessions)) for _ in range(max(1, args.repeats - 1))]
            aggregate[sessions] = statistics.median(samples)
        loop.run_until_complete(client.close())
        loop.run_until_complete(admin.close())
    finally:
        stop_all(nodes)
        loop.close()

    figures = {
        "model": args.model,
        "segments": [f"{s}:{e}" for s, e in segments],
        "new_tokens": args.new_tokens,
        "threads": args.threads,
        "a_tokens_per_s": tps,
        "a_ratio_loopback_over_inproc": ratio,
        "b_added_ms_per_message": {"p50": pct(added, 0.5) * 1e3, "p99": pct(added, 0.99) * 1e3},
        "b_decode_step_wall_ms": {"p50": pct(walls, 0.5) * 1e3, "p99": pct(walls, 0.99) * 1e3},
        "b_ping_roundtrip_ms": {"p50": pct(ping, 0.5) * 1e3, "p99": pct(ping, 0.99) * 1e3},
        "c_aggregate_tokens_per_s": aggregate,
        "c_ratio_16_over_1": aggregate[16] / aggregate[1],
    }
    print(
        f"(a) tokens/s in-process {tps['inproc']:.2f}, 3-node loopback {tps['loopback']:.2f}, "
        f"ratio {ratio:.3f}"
    )
    print(
        f"(b) added per message p50 {figures['b_added_ms_per_message']['p50']:.3f} ms, "
        f"p99 {figures['b_added_ms_per_message']['p99']:.3f} ms; decode step wall p50 "
        f"{figures['b_decode_step_wall_ms']['p50']:.1f} ms; ping round trip p50 "
        f"{figures['b_ping_roundtrip_ms']['p50']:.3f} ms p99 {figures['b_ping_roundtrip_ms']['p99']:.3f} ms"
    )
    print(
        "(c) aggregate tokens/s "
        + ", ".join(f"{k} sessions {v:.2f}" for k, v in aggregate.items())
        + f"; 16/1 = {figures['c_ratio_16_over_1']:.2f}"
    )
    if args.record:
        print(record("bench_transport", figures))


if __name__ == "__main__":
    main()
