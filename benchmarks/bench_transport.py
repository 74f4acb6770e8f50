"""The data plane on real processes: 3-node loopback vs in-process, per-hop overhead, batching.

Run: python benchmarks/bench_transport.py --model builtin:llama-base --new-tokens 16 --repeats 3 \
         --threads 1 --record

(a) tokens/s of a 3-node loopback chain (real `edgesplit node` processes, no emulated delays) over
    tokens/s of one in-process segment (in a clean child process), interleaved, medians;
(b) per-step added latency of the chain (wall time minus the compute every node reported) per
    message, p50/p99, and a zero-payload Ping round trip on the same stack (warmed up; the median
    of several rounds' medians);
(c) aggregate tokens/s with 1, 4 and 16 concurrent sessions on the loopback chain, interleaved with
    the same lockstep batches run in-process through the same three segments on one thread (the
    ceiling batching allows on one core); ``--c-groups`` compares client micro-batch group sizes.
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

PROMPT = [11, 42, 7, 300, 5, 99, 1234, 8, 17, 256, 31, 77, 4, 900, 23, 64]


INPROC_CHILD = """
import sys, time, torch
torch.set_num_threads(int(sys.argv[2]))
from edgesplit.model.chain import SegmentChain
from edgesplit.model.loader import load_block_model
from edgesplit.model.segment import SegmentRunner
from edgesplit.model.steps import SegmentStep
bm = load_block_model(sys.argv[1])
chain = SegmentChain.from_block_model(bm, [(0, bm.num_blocks)])
thirds = [int(x) for x in sys.argv[3].split(",")]
runners = [SegmentRunner(bm, a, b) for a, b in zip(thirds, thirds[1:])]

def lockstep(sids, prompt, new_tokens):
    xs, position, t0 = [torch.tensor(prompt) for _ in sids], 0, time.perf_counter()
    for k in range(new_tokens):
        if k == 1:
            t1 = time.perf_counter()
        for runner in runners:
            outs = runner.step([SegmentStep(s, x, position) for s, x in zip(sids, xs)])
            xs = [o.hidden if o.hidden is not None else torch.tensor([o.token_id]) for o in outs]
        position += len(prompt) if k == 0 else 1
    t2 = time.perf_counter()
    for runner in runners:
        for s in sids:
            runner.drop(s)
    return t2 - t0, t2 - t1

print("ready", flush=True)
for n, line in enumerate(sys.stdin):
    prompt, new_tokens, sessions = line.split(";")
    prompt, new_tokens, sessions = [int(t) for t in prompt.split(",")], int(new_tokens), int(sessions)
    if sessions == 0:
        t0 = time.perf_counter()
        chain.generate(prompt, new_tokens, session_id=f"s{n}")
        print(time.perf_counter() - t0, 0.0, flush=True)
    else:
        print(*lockstep([f"b{n}.{i}" for i in range(sessions)], prompt, new_tokens), flush=True)
"""


class InprocChild:
    """The in-process baseline in its own clean process (no gRPC threads, no client event loop)."""

    def __init__(self, model_dir: Path, threads: int, cuts: list[int]) -> None:
        import subprocess

        self.proc = subprocess.Popen(
            [sys.executable, "-c", INPROC_CHILD, str(model_dir), str(threads), ",".join(map(str, cuts))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def generate(self, new_tokens: int) -> float:
        """One whole generation through one 0:B segment; its wall time."""
        return self._ask(new_tokens, 0)[0]

    def lockstep(self, new_tokens: int, sessions: int) -> tuple[float, float]:
        """``sessions`` generations batched through the three segments: total and decode-only time."""
        return self._ask(new_tokens, sessions)

    def _ask(self, new_tokens: int, sessions: int) -> tuple[float, float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(",".join(map(str, PROMPT)) + f";{new_tokens};{sessions}\n")
        self.proc.stdin.flush()
        total, decode = self.proc.stdout.readline().split()
        return float(total), float(decode)

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


async def overhead_samples(
    client: GrpcSegmentClient, route: Route, sid: str, steps: int
) -> tuple[list[float], list[float]]:
    """Per decode step: (wall − Σ queue + compute the nodes reported) per message, and the wall time."""
    result = await client.run_step(route, ChainStep(sid, tuple(PROMPT), 0), 120.0)
    position, token, added, walls = len(PROMPT), result.token_id, [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        result = await client.run_step(route, ChainStep(sid, (token,), position), 120.0)
        wall = time.perf_counter() - t0
        compute = sum(t.compute_s + t.queue_s for t in result.timings)
        added.append((wall - compute) / (len(route.hops) + 1))  # client->n0, n0->n1, n1->n2, n2->sink
        walls.append(wall)
        position, token = position + 1, result.token_id
    await client.end_session(route, sid)
    return added, walls


async def ping_rounds(
    client: GrpcSegmentClient, address: str, rounds: int, per_round: int
) -> list[list[float]]:
    """Zero-payload Ping round trips on the data-plane channel, after a warm-up, in several rounds."""
    for _ in range(100):
        await client.ping(address)
    out = []
    for _ in range(rounds):
        samples = []
        for _ in range(per_round):
            t0 = time.perf_counter()
            await client.ping(address)
            samples.append(time.perf_counter() - t0)
        out.append(samples)
    return out


async def concurrent(
    client: GrpcSegmentClient, route: Route, prefix: str, sessions: int, new_tokens: int
) -> tuple[float, float, float]:
    """All sessions prefill together, then decode together (each in its own task, as gateway requests
    are): total time, decode-only time, and the median compute the three nodes reported per step."""
    sids = [f"{prefix}.{i}" for i in range(sessions)]
    t0 = time.perf_counter()
    firsts = await asyncio.gather(
        *(client.run_step(route, ChainStep(sid, tuple(PROMPT), 0), 300.0) for sid in sids)
    )
    t1 = time.perf_counter()
    computes: list[float] = []

    async def decode(sid: str, token: int) -> None:
        position = len(PROMPT)
        for _ in range(new_tokens - 1):
            result = await client.run_step(route, ChainStep(sid, (token,), position), 300.0)
            computes.append(sum(t.compute_s for t in result.timings))
            position, token = position + 1, result.token_id

    await asyncio.gather(*(decode(sid, r.token_id) for sid, r in zip(sids, firsts, strict=True)))
    t2 = time.perf_counter()
    await asyncio.gather(*(client.end_session(route, sid) for sid in sids))
    return t2 - t0, t2 - t1, statistics.median(computes)


def parse_groups(text: str) -> list[int | None]:
    return [None if g in ("none", "all", "0") else int(g) for g in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:llama-base")
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per node and in-process")
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--only-c", action="store_true", help="skip (a) and (b)")
    parser.add_argument(
        "--c-groups",
        default="none",
        help="client max steps per call to compare in (c), e.g. none,8 (none: a whole turn per call)",
    )
    parser.add_argument("--ping-rounds", type=int, default=5)
    parser.add_argument("--ping-per-round", type=int, default=300)
    args = parser.parse_args()
    model_dir = resolve_model(args.model)
    n_blocks = load_block_model(model_dir).num_blocks
    segments = thirds(n_blocks)
    groups = parse_groups(args.c_groups)
    child = InprocChild(model_dir, args.threads, [0, *(e for _, e in segments)])
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
        clients = {g: GrpcSegmentClient(max_steps_per_call=g) for g in groups}
        client = clients[groups[0]]
        counter = iter(range(10**9))

        def inproc() -> None:
            child.generate(args.new_tokens)

        def loopback() -> None:
            loop.run_until_complete(decode_session(client, route, f"g{next(counter)}", args.new_tokens))

        nan = float("nan")
        tps, ratio = {"inproc": nan, "loopback": nan}, nan
        added, walls, ping, ping_round_p50 = [nan], [nan], [nan], [nan]
        if not args.only_c:
            # (a) whole generations, interleaved
            runs = interleaved({"inproc": inproc, "loopback": loopback}, repeats=args.repeats, warmup=1)
            tps = {name: args.new_tokens / m.median_s for name, m in runs.items()}
            ratio = tps["loopback"] / tps["inproc"]
            print(f"(a) tokens/s {tps}, ratio {ratio:.3f}", flush=True)
            # (b) per-step added latency, then the fixed per-message cost
            added, walls = loop.run_until_complete(overhead_samples(client, route, f"o{next(counter)}", 60))
            rounds = loop.run_until_complete(
                ping_rounds(client, hops[0].address, args.ping_rounds, args.ping_per_round)
            )
            ping = [x for r in rounds for x in r]
            ping_round_p50 = [statistics.median(r) for r in rounds]
            print(f"(b) ping p50 per round (ms): {[round(x * 1e3, 3) for x in ping_round_p50]}", flush=True)

        # (c) aggregate tokens/s with concurrent sessions, interleaved with the in-process lockstep
        variants = ["inproc", *(f"loopback/{g or 'all'}" for g in groups)]
        samples: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
        for _ in range(args.repeats):
            for sessions in (1, 4, 16):
                total, decode = child.lockstep(args.new_tokens, sessions)
                samples.setdefault(("inproc", sessions), []).append((total, decode, nan))
                for g, c in clients.items():
                    got = loop.run_until_complete(
                        concurrent(c, route, f"c{next(counter)}", sessions, args.new_tokens)
                    )
                    samples.setdefault((f"loopback/{g or 'all'}", sessions), []).append(got)
        c_total: dict[str, dict[int, float]] = {v: {} for v in variants}
        c_decode: dict[str, dict[int, float]] = {v: {} for v in variants}
        c_compute: dict[str, dict[int, float]] = {v: {} for v in variants}
        for (variant, sessions), runs_ in samples.items():
            c_total[variant][sessions] = sessions * args.new_tokens / statistics.median(r[0] for r in runs_)
            c_decode[variant][sessions] = (
                sessions * (args.new_tokens - 1) / statistics.median(r[1] for r in runs_)
            )
            if variant != "inproc":  # the in-process chain reports no per-node times
                c_compute[variant][sessions] = statistics.median(r[2] for r in runs_) * 1e3
        for variant in variants:
            print(
                f"(c) {variant}: tokens/s incl. prefill "
                + " / ".join(f"{c_total[variant][k]:.2f}" for k in (1, 4, 16))
                + f" (16/1 = {c_total[variant][16] / c_total[variant][1]:.2f}); decode-only "
                + " / ".join(f"{c_decode[variant][k]:.2f}" for k in (1, 4, 16))
                + f" (16/1 = {c_decode[variant][16] / c_decode[variant][1]:.2f}); Σ node compute per "
                + "decode step (ms) "
                + " / ".join(f"{c_compute[variant].get(k, nan):.0f}" for k in (1, 4, 16)),
                flush=True,
            )
        for c in clients.values():
            loop.run_until_complete(c.close())
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
        "b_ping_roundtrip_ms": {
            "p50": statistics.median(ping_round_p50) * 1e3,
            "p99": pct(ping, 0.99) * 1e3,
            "round_p50s": [x * 1e3 for x in ping_round_p50],
            "samples": len(ping),
        },
        "c_aggregate_tokens_per_s": c_total,
        "c_ratio_16_over_1": {v: c_total[v][16] / c_total[v][1] for v in variants},
        "c_decode_tokens_per_s": c_decode,
        "c_decode_ratio_16_over_1": {v: c_decode[v][16] / c_decode[v][1] for v in variants},
        "c_node_compute_ms_per_decode_step": {v: c for v, c in c_compute.items() if c},
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
    if args.record:
        print(record("bench_transport", figures))


if __name__ == "__main__":
    main()
