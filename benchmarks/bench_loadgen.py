"""Is the load generator honest? Open-loop (edgesplit bench) vs a closed-loop client under a gateway stall.

Run: python benchmarks/bench_loadgen.py [--rate 10] [--duration 20] [--stall-at 8] [--stall 1] [--record]

A real gateway (uvicorn, its own process, 127.0.0.1:0) over a stand-in chain (fixed step time, no
model) freezes every step for ``--stall`` seconds once. The same schedule is driven two ways, in one run:
* open loop (`evaluation.load.run_open_loop`): each request leaves at its scheduled time and its latency
  counts from that time, so every request that *should* have been sent during the stall sees it;
* closed loop (one client, next request after the previous answer, latency from the actual send — what
  a naive benchmark does): the stall hits one request and the others are quietly sent later.
The gap between the two tails is the coordinated omission the harness avoids. Also reported: how late
the open-loop client itself sent requests (its own overhead on this machine).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import statistics
import time
from typing import Any

import httpx
from harness import record

from edgesplit.evaluation.load import RequestRecord, run_open_loop
from edgesplit.evaluation.workload import PlannedRequest
from edgesplit.transport.base import ChainResult, ChainStep, HopTiming, Route

MODEL = "builtin:llama-tiny"
STEP_S = 0.01


class StallingChain:
    """Every step takes ``STEP_S``; steps that arrive in the stall window wait until it ends.

    The window (monotonic start, end) lives in shared memory so the benchmark process can set it;
    CLOCK_MONOTONIC is one clock for every process of the machine.
    """

    def __init__(self, token_id: int, stall: Any) -> None:
        self.token_id = token_id
        self.stall = stall

    async def run_step(self, route: Route, step: ChainStep, timeout_s: float) -> ChainResult:
        await asyncio.sleep(STEP_S)
        start, end = self.stall[0], self.stall[1]
        if start <= time.monotonic() < end:
            await asyncio.sleep(end - time.monotonic())
        return ChainResult(step.session_id, self.token_id, (HopTiming("device", 0.0, STEP_S, 0.0),))

    async def end_session(self, route: Route, session_id: str) -> None:
        return None

    async def close(self) -> None:
        return None


def serve_gateway(stall: Any, sock: socket.socket) -> None:
    """Child process: the gateway over the stalling chain, until killed."""
    import uvicorn

    from edgesplit.gateway.app import create_app
    from edgesplit.gateway.config import GatewayConfig, GatewayNodeConfig
    from edgesplit.gateway.routes import route_from_segments
    from edgesplit.gateway.text import TextCodec
    from edgesplit.model.builtin import resolve_model

    model_dir = resolve_model(MODEL)
    codec = TextCodec.from_checkpoint(model_dir)
    config = GatewayConfig(
        model_name=MODEL,
        model_path=model_dir,
        nodes=[GatewayNodeConfig(id="device", address="127.0.0.1:1", trusted=True, source=True)],
        max_concurrent_requests=1024,
    )
    route = route_from_segments(1, [("device", "127.0.0.1:1", 0, codec.num_blocks)])
    app = create_app(config, StallingChain(10, stall), codec=codec, route=route)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on")).run(sockets=[sock])


def start_gateway(stall: Any) -> tuple[Any, str]:
    """The gateway in its own process (not sharing the client's GIL); returns once it answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    proc = multiprocessing.get_context("fork").Process(target=serve_gateway, args=(stall, sock), daemon=True)
    proc.start()
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or not proc.is_alive():
            proc.kill()
            raise SystemExit("the gateway did not start")
        time.sleep(0.1)


async def closed_loop(url: str, schedule: list[PlannedRequest]) -> list[float]:
    """A naive client: one request at a time, never before its scheduled time; latency from its send."""
    latencies = []
    t0 = time.monotonic()
    async with httpx.AsyncClient(timeout=60) as client:
        for req in schedule:
            await asyncio.sleep(max(0.0, t0 + req.send_at_s - time.monotonic()))
            start = time.monotonic()
            body = {"model": MODEL, "prompt": req.prompt, "max_tokens": req.max_tokens, "temperature": 0}
            resp = await client.post(f"{url}/v1/completions", json=body)
            resp.raise_for_status()
            latencies.append(time.monotonic() - start)
    return latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second (uniform)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of arrivals")
    parser.add_argument("--stall-at", type=float, default=8.0, help="stall start, s after the load starts")
    parser.add_argument("--stall", type=float, default=1.0, help="stall length, s")
    parser.add_argument("--tokens", type=int, default=4, help="max_tokens per request")
    parser.add_argument("--record", action="store_true", help="write the figures to benchmarks/results/")
    args = parser.parse_args()

    stall = multiprocessing.get_context("fork").Array("d", [0.0, 0.0], lock=False)
    proc, url = start_gateway(stall)
    count = int(args.rate * args.duration)
    schedule = [
        PlannedRequest(i, i / args.rate, "a the and is on", args.tokens, "high") for i in range(count)
    ]
    try:
        asyncio.run(run_open_loop(url, MODEL, schedule[:5], timeout_s=30))  # warm-up
        t0 = time.monotonic() + 0.5
        stall[0], stall[1] = t0 + args.stall_at, t0 + args.stall_at + args.stall
        open_records: list[RequestRecord] = asyncio.run(
            run_open_loop(url, MODEL, schedule, timeout_s=60, start_monotonic=t0)
        )
        start = time.monotonic()
        stall[0], stall[1] = start + args.stall_at, start + args.stall_at + args.stall
        closed = asyncio.run(closed_loop(url, schedule))
    finally:
        proc.kill()
        proc.join(timeout=10)
    open_ms = [r.latency_s * 1000 for r in open_records if r.status == "ok"]
    closed_ms = [s * 1000 for s in closed]
    lag_ms = [r.sent_late_s * 1000 for r in open_records]
    figures = {
        "requests": count,
        "open_ok": len(open_ms),
        "open_p50_ms": pct(open_ms, 50),
        "open_p99_ms": pct(open_ms, 99),
        "open_over_500ms": sum(ms > 500 for ms in open_ms),
        "closed_p50_ms": pct(closed_ms, 50),
        "closed_p99_ms": pct(closed_ms, 99),
        "closed_over_500ms": sum(ms > 500 for ms in closed_ms),
        "p99_ratio_open_over_closed": pct(open_ms, 99) / pct(closed_ms, 99),
        "send_lag_p50_ms": statistics.median(lag_ms),
        "send_lag_p99_ms": pct(lag_ms, 99),
        "send_lag_max_ms": max(lag_ms),
    }
    stall_text = f"{args.stall:g} s stall at {args.stall_at:g} s"
    print(f"{count} requests at {args.rate:g}/s, {args.tokens} tokens each, {stall_text}")
    print(
        f"open loop  : p50 {figures['open_p50_ms']:.0f} ms  p99 {figures['open_p99_ms']:.0f} ms  "
        f"> 500 ms: {figures['open_over_500ms']}  ({figures['open_ok']} ok)"
    )
    print(
        f"closed loop: p50 {figures['closed_p50_ms']:.0f} ms  p99 {figures['closed_p99_ms']:.0f} ms  "
        f"> 500 ms: {figures['closed_over_500ms']}"
    )
    print(f"p99 open / closed: {figures['p99_ratio_open_over_closed']:.1f}x")
    print(
        f"open-loop send lag: p50 {figures['send_lag_p50_ms']:.1f} ms  "
        f"p99 {figures['send_lag_p99_ms']:.1f} ms  max {figures['send_lag_max_ms']:.1f} ms"
    )
    if args.record:
        record("loadgen", figures)


if __name__ == "__main__":
    main()
