"""The open-loop load generator against a real HTTP gateway (uvicorn on 127.0.0.1:0 over a fake chain),
and once (slow) against a real loopback cluster."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edgesplit.evaluation.load import RequestRecord, run_open_loop
from edgesplit.evaluation.workload import PlannedRequest
from edgesplit.gateway.text import TextCodec

sys.path.insert(0, str(Path(__file__).parents[1] / "gateway"))
from gateway_factories import MODEL, ThreadedGateway, fake_gateway_app
from gateway_fakes import FakeChain

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def model_dir() -> Path:
    from edgesplit.model.builtin import resolve_model

    return resolve_model(MODEL)


@pytest.fixture(scope="module")
def codec(model_dir: Path) -> TextCodec:
    return TextCodec.from_checkpoint(model_dir)


@pytest.fixture
def gateway(model_dir: Path, codec: TextCodec) -> Iterator[ThreadedGateway]:
    chain = FakeChain(vocab=codec.vocab_size, step_delay_s=0.05)
    with ThreadedGateway(fake_gateway_app(chain, model_dir, codec, max_concurrent_requests=128)) as gw:
        yield gw


def planned(n: int, gap_s: float, max_tokens: int = 6, privacy: str = "high") -> list[PlannedRequest]:
    return [PlannedRequest(i, i * gap_s, "a the and is on", max_tokens, privacy) for i in range(n)]  # type: ignore[arg-type]


def max_overlap(records: list[RequestRecord]) -> int:
    edges = sorted([(r.send_s, 1) for r in records] + [(r.end_s, -1) for r in records])
    running = best = 0
    for _, step in edges:
        running += step
        best = max(best, running)
    return best


def test_requests_leave_on_schedule_and_overlap(gateway: ThreadedGateway, codec: TextCodec) -> None:
    # each request takes >= 6 steps x 50 ms = 0.3 s but one leaves every 40 ms: a closed loop falls behind
    done: list[int] = []
    records = asyncio.run(
        run_open_loop(
            gateway.url, MODEL, planned(20, 0.04), timeout_s=20, on_done=lambda r: done.append(r.index)
        )
    )
    assert [r.index for r in records] == list(range(20))
    assert sorted(done) == list(range(20))
    assert {r.status for r in records} == {"ok"}, [r.error for r in records]
    assert all(r.tokens == 6 for r in records)
    # a closed loop would send the last request >= 19 x (0.3 - 0.04) = 4.9 s late; an open loop only lags
    # by event-loop jitter (the gateway shares this process's GIL, the machine is shared): bound it well below
    assert max(r.sent_late_s for r in records) < 1.0
    assert max_overlap(records) >= 5
    for r in records:
        assert r.latency_s >= 0.3
        assert r.first_token_s is not None and r.send_s < r.first_token_s <= r.end_s
        assert r.epochs == (1,)
    last = codec.num_blocks - 1
    expected = {0: ("device",), 1: ("device",), last: ("device",)} | {b: ("mec1",) for b in range(2, last)}
    assert records[0].nodes_by_block == expected


def test_latency_counts_from_the_scheduled_time_not_the_late_send(gateway: ThreadedGateway) -> None:
    # the schedule "started" 1 s ago: the request leaves 1 s late and that second is part of its latency
    start = time.monotonic() - 1.0
    (record,) = asyncio.run(
        run_open_loop(gateway.url, MODEL, planned(1, 0.0, 2), timeout_s=20, start_monotonic=start)
    )
    assert record.status == "ok"
    assert record.sent_late_s >= 1.0
    assert record.latency_s >= 1.0 + 0.1
    assert record.end_s - record.sent_late_s < record.latency_s


def test_epoch_change_during_the_run_is_recorded(gateway: ThreadedGateway, codec: TextCodec) -> None:
    last = codec.num_blocks - 1
    plan = {
        "epoch": 2,
        "segments": [
            {"node": "device", "start": 0, "end": 2},
            {"node": "cloud", "start": 2, "end": last},
            {"node": "device", "start": last, "end": last + 1},
        ],
    }

    async def run() -> tuple[list[RequestRecord], float]:
        t0 = time.monotonic()
        first_done = asyncio.Event()
        load = asyncio.create_task(
            run_open_loop(
                gateway.url,
                MODEL,
                planned(20, 0.25, 4),
                timeout_s=20,
                start_monotonic=t0,
                on_done=lambda r: first_done.set() if r.index == 0 else None,
            )
        )
        await asyncio.wait_for(first_done.wait(), 20)
        async with httpx.AsyncClient() as client:
            resp = await client.put(f"{gateway.url}/v1/plan", json=plan)
            assert resp.status_code == 200, resp.text
        committed_s = time.monotonic() - t0
        return await load, committed_s

    records, committed_s = asyncio.run(run())
    assert {r.status for r in records} == {"ok"}
    assert records[0].epochs == (1,)
    after = [r for r in records if r.send_s > committed_s]
    assert after, f"the plan was committed only at {committed_s:.2f} s, after every request left"
    for r in after:
        assert r.epochs == (2,)
        assert r.nodes_by_block is not None and r.nodes_by_block[2] == ("cloud",)
    for r in records:
        if r.epochs == (1, 2):  # moved mid-request: both chains are reported
            assert r.nodes_by_block is not None and r.nodes_by_block[2] == ("cloud", "mec1")


def test_failures_become_records_not_exceptions(model_dir: Path, codec: TextCodec) -> None:
    failing = FakeChain(vocab=codec.vocab_size, fail_after=2, step_delay_s=0.01)
    with ThreadedGateway(fake_gateway_app(failing, model_dir, codec, request_timeout_s=5)) as gw:
        records = asyncio.run(run_open_loop(gw.url, MODEL, planned(2, 0.0), timeout_s=10))
        assert [r.status for r in records] == ["error", "error"]
        assert all(r.error and "mec1 is gone" in r.error for r in records)
        (wrong_model,) = asyncio.run(run_open_loop(gw.url, "no-such-model", planned(1, 0.0), timeout_s=10))
        assert wrong_model.status == "error" and wrong_model.error is not None
        assert wrong_model.error.startswith("HTTP 404:")
        assert wrong_model.epochs == () and wrong_model.nodes_by_block is None


def test_a_request_slower_than_its_timeout_is_a_timeout(model_dir: Path, codec: TextCodec) -> None:
    slow = FakeChain(vocab=codec.vocab_size, step_delay_s=0.5)
    with ThreadedGateway(fake_gateway_app(slow, model_dir, codec)) as gw:
        started = time.monotonic()
        (record,) = asyncio.run(run_open_loop(gw.url, MODEL, planned(1, 0.0, 8), timeout_s=0.8))
        assert time.monotonic() - started < 3.0
    assert record.status == "timeout"
    assert 0.8 <= record.end_s < 2.0


def test_nobody_listening_is_an_error_record() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, never listening: refused
        (record,) = asyncio.run(run_open_loop(url, MODEL, planned(1, 0.0), timeout_s=5))
    assert record.status == "error" and record.error is not None and "Connect" in record.error


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_against_a_real_loopback_cluster_records_where_requests_ran(tmp_path: Path) -> None:
    from edgesplit.cluster.launcher import LocalCluster
    from edgesplit.cluster.loader import load_cluster
    from edgesplit.model.builtin import resolve_model

    cluster = load_cluster(Path(__file__).parents[2] / "examples" / "mec-3node.yaml")
    local = LocalCluster(cluster, resolve_model(cluster.model), orchestrator_args=["--interval", "1"])
    pids: list[int] = []
    try:
        local.start(300)  # generous: on the shared 2-core machine a cold start can take minutes
        pids = [c.proc.pid for c in local.children]
        plan = httpx.get(f"{local.gateway_url}/v1/plan", timeout=10).json()
        schedule = [*planned(6, 0.3, 4), PlannedRequest(6, 1.8, "a the and is on", 4, "none")]
        records = asyncio.run(run_open_loop(local.gateway_url, cluster.model, schedule, timeout_s=60))
    finally:
        local.stop()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert [r.status for r in records] == ["ok"] * 7, [r.error for r in records]
    expected = {b: (s["node"],) for s in plan["segments"] for b in range(s["start"], s["end"])}
    for r in records:
        assert r.epochs == (plan["epoch"],)
        assert r.nodes_by_block == expected
        assert 1 <= r.tokens <= 4 and r.first_token_s is not None
    assert records[-1].privacy == "none"
