"""The data plane on real processes: 3-node loopback vs in-process, per-hop overhead, batching.

Run: python benchmarks/bench_transport.py --model builtin:llama-base --new-tokens 16 --repeats 3 \
         --threads 1 --record

(a) tokens/s of a 3-node loopback chain (real `edgesplit node` processes, no emulated delays) over
    tokens/s of one in-process segment (in a clean child process), interleaved, medians;
(b) per-step added latency of the chain (wall time minus the compute every node reported) per
    message, p50/p99, and a zero-payload Ping round trip on the same stack;
(c) aggregate decode tokens/s with 1, 4 and 16 concurrent sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness import interleaved, record

from edgesplit.model.builtin import resolve_model
from edgesplit.model.loader import load_block_model
from edgesplit.node.launcher import NodeProcess, spawn_node, stop_all
from edgesplit.transport.base import ChainStep, Hop, Route
from edgesplit.transport.grpc_client import GrpcSegmentClient
from edgesplit.transport.node_admin import NodeAdmin

PROMPT = [11, 42, 7, 300, 5, 99, 1234, 8, 17, 256, 31, 77, 4, 900, 23, 64]


INPROC_CHILD = """
import sys, time, torch
torch.set_num_threads(int(sys.argv[2]))
from edgesplit.model.chain import SegmentChain
from edgesplit.model.loader import load_block_model
bm = load_block_model(sys.argv[1])
chain = SegmentChain.from_block_model(bm, [(0, bm.num_blocks)])
print("ready", flush=True)
for n, line in enumerate(sys.stdin):
    prompt, new_tokens = line.split(";")
    t0 = time.perf_counter()
    chain.generate([int(t) for t in prompt.split(",")], int(new_tokens), session_id=f"s{n}")
    print(time.perf_counter() - t0, flush=True)
"""


class InprocChild:
    """The in-process baseline in its own clean process (no gRPC threads, no client event loop)."""

    def __init__(self, model_dir: Path, threads: int) -> None:
        import subprocess

        self.proc = subprocess.Popen(
            [sys.executable, "-c", INPROC_CHILD, str(model_dir), str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def generate(self, new_tokens: int) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(",".join(map(str, PROMPT)) + f";{new_tokens}\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


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
    parser.add_argument("--threads", type=int, default=1, help="torch threads per node and in-process")
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--only-c", action="store_true", help="skip (a) and (b)")
    args = parser.parse_args()
    model_dir = resolve_model(args.model)
    n_blocks = load_block_model(model_dir).num_blocks
    segments = thirds(n_blocks)
    child = InprocChild(model_dir, args.threads)
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
            child.generate(args.new_tokens)

        def loopback() -> None:
            loop.run_until_complete(decode_session(client, route, f"g{next(counter)}", args.new_tokens))

        nan = float("nan")
        tps, ratio = {"inproc": nan, "loopback": nan}, nan
        added, walls, ping = [nan], [nan], [nan]
        if not args.only_c:
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
        async def concurrent(sessions: int) -> tuple[float, float, float]:
            """All sessions prefill together, then decode together: total tokens/s (prefill
            included), decode-only tokens/s, and the median compute one node reported per step."""
            sids = [f"c{next(counter)}" for _ in range(sessions)]
            t0 = time.perf_counter()
            firsts = await asyncio.gather(
                *(client.run_step(route, ChainStep(sid, tuple(PROMPT), 0), 300.0) for sid in sids)
            )
            t1 = time.perf_counter()
            computes: list[float] = []

            async def decode(sid: str, token: int) -> None:
                position = len(PROMPT)
                for _ in range(args.new_tokens - 1):
                    result = await client.run_step(route, ChainStep(sid, (token,), position), 300.0)
                    computes.append(result.timings[1].compute_s)
                    position, token = position + 1, result.token_id
                await client.end_session(route, sid)

            await asyncio.gather(*(decode(sid, r.token_id) for sid, r in zip(sids, firsts, strict=True)))
            t2 = time.perf_counter()
            total = sessions * args.new_tokens / (t2 - t0)
            return total, sessions * (args.new_tokens - 1) / (t2 - t1), statistics.median(computes)

        aggregate, decode_only, node_compute = {}, {}, {}
        for sessions in (1, 4, 16):
            samples = [loop.run_until_complete(concurrent(sessions)) for _ in range(max(1, args.repeats - 1))]
            aggregate[sessions] = statistics.median(s[0] for s in samples)
            decode_only[sessions] = statistics.median(s[1] for s in samples)
            node_compute[sessions] = statistics.median(s[2] for s in samples) * 1e3
            print(
                f"(c) {sessions} sessions: {aggregate[sessions]:.2f} tokens/s incl. prefill, "
                f"{decode_only[sessions]:.2f} decode tokens/s, "
                f"n1 compute per step {node_compute[sessions]:.1f} ms",
                flush=True,
            )
        loop.run_until_complete(client.close())
        loop.run_until_complete(admin.close())
    finally:
        stop_all(nodes)
        child.close()
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
        "c_decode_tokens_per_s": decode_only,
        "c_decode_ratio_16_over_1": decode_only[16] / decode_only[1],
        "c_node1_compute_ms_per_step": node_compute,
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
