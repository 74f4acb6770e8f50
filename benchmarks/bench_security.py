"""The cost of mTLS: tokens/s of a 3-node loopback chain with mTLS vs plain gRPC, side by side.

Run: python benchmarks/bench_security.py --model builtin:llama-base --new-tokens 16 --repeats 5 \
         --threads 1 --record

Two chains run at once, each of three real `edgesplit node` processes (``--threads 1``), cut in
thirds: one with certificates from a fresh CA (`--tls-dir`), one without. Generations (16-token
prompt + ``--new-tokens``, greedy) alternate between them (warm-ups excluded); the figure is the
median tokens/s ratio mTLS / insecure. Also: zero-payload Ping round trips on each first hop.
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
from edgesplit.security.pki import Role, init_ca, issue
from edgesplit.transport.base import ChainStep, Hop, Route
from edgesplit.transport.grpc_client import GrpcSegmentClient
from edgesplit.transport.tls import TlsConfig, TlsFilesConfig

PROMPT = [11, 42, 7, 300, 5, 99, 1234, 8, 17, 256, 31, 77, 4, 900, 23, 64]


def thirds(n_blocks: int) -> list[tuple[int, int]]:
    a, b = n_blocks // 3, 2 * n_blocks // 3
    return [(0, a), (a, b), (b, n_blocks)]


async def generate(client: GrpcSegmentClient, route: Route, sid: str, new_tokens: int) -> list[int]:
    result = await client.run_step(route, ChainStep(sid, tuple(PROMPT), 0), 120.0)
    tokens, position = [result.token_id], len(PROMPT)
    for _ in range(new_tokens - 1):
        result = await client.run_step(route, ChainStep(sid, (tokens[-1],), position), 120.0)
        tokens.append(result.token_id)
        position += 1
    await client.end_session(route, sid)
    return tokens


async def pings(client: GrpcSegmentClient, address: str, n: int) -> list[float]:
    for _ in range(50):
        await client.ping(address)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await client.ping(address)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:llama-base")
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per node")
    parser.add_argument("--pings", type=int, default=500)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    model_dir = resolve_model(args.model)
    segments = thirds(load_block_model(model_dir).num_blocks)
    workdir = Path(tempfile.mkdtemp(prefix="bench-security-"))
    pki = workdir / "pki"
    init_ca(pki)
    issue(pki, "bench", Role.GATEWAY)
    for i in range(len(segments)):
        issue(pki, f"s{i}", Role.NODE, trusted=True)
    common = ["--threads", str(args.threads)]
    nodes: dict[str, list[NodeProcess]] = {
        "mtls": [
            spawn_node(
                f"s{i}",
                workdir,
                model=str(model_dir),
                segments=[seg],
                extra_args=[*common, "--tls-dir", str(pki)],
            )
            for i, seg in enumerate(segments)
        ],
        "insecure": [
            spawn_node(f"p{i}", workdir, model=str(model_dir), segments=[seg], extra_args=common)
            for i, seg in enumerate(segments)
        ],
    }
    loop = asyncio.new_event_loop()
    try:
        routes = {
            mode: Route(
                0,
                tuple(
                    Hop(n.node_id, n.wait_ready(600), s, e) for n, (s, e) in zip(group, segments, strict=True)
                ),
            )
            for mode, group in nodes.items()
        }
        clients = {
            "mtls": GrpcSegmentClient(tls=TlsConfig.load(TlsFilesConfig.in_dir(pki, "bench"))),
            "insecure": GrpcSegmentClient(),
        }
        counter = iter(range(10**9))
        outputs: dict[str, list[int]] = {}

        def run(mode: str) -> None:
            outputs[mode] = loop.run_until_complete(
                generate(clients[mode], routes[mode], f"{mode}{next(counter)}", args.new_tokens)
            )

        runs = interleaved(
            {"mtls": lambda: run("mtls"), "insecure": lambda: run("insecure")}, repeats=args.repeats, warmup=1
        )
        assert outputs["mtls"] == outputs["insecure"], "the two chains must generate the same tokens"
        tps = {mode: args.new_tokens / m.median_s for mode, m in runs.items()}
        per_run = [
            (args.new_tokens / a) / (args.new_tokens / b)
            for a, b in zip(runs["mtls"].samples_s, runs["insecure"].samples_s, strict=True)
        ]
        ratio = tps["mtls"] / tps["insecure"]
        ping = {
            mode: loop.run_until_complete(pings(clients[mode], routes[mode].hops[0].address, args.pings))
            for mode in ("insecure", "mtls")
        }
        ping_p50_ms = {mode: statistics.median(v) * 1e3 for mode, v in ping.items()}
        print(f"tokens/s (median of {args.repeats}): {tps}", flush=True)
        print(f"ratio mTLS / insecure: {ratio:.3f} (paired per-run ratios {[round(r, 3) for r in per_run]})")
        print(f"Ping p50 ms: {ping_p50_ms}")
        for client in clients.values():
            loop.run_until_complete(client.close())
        if args.record:
            path = record(
                "bench_security",
                {
                    "model": args.model,
                    "new_tokens": args.new_tokens,
                    "repeats": args.repeats,
                    "threads": args.threads,
                    "tokens_per_s": tps,
                    "ratio_mtls_over_insecure": ratio,
                    "paired_ratios": per_run,
                    "samples_s": {mode: m.samples_s for mode, m in runs.items()},
                    "ping_p50_ms": ping_p50_ms,
                },
            )
            print(f"recorded {path}")
    finally:
        loop.close()
        stop_all([n for group in nodes.values() for n in group])


if __name__ == "__main__":
    main()
