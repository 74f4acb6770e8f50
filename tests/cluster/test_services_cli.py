"""`edgesplit up / gateway / orchestrator` from the command line: misuse exits 2 with one clear line;
the services started one at a time (as on separate machines) form a working cluster."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from loopback_up import pid_alive

from edgesplit.orchestrator.signing import load_or_create_private_key, public_key_text

CLI = [sys.executable, "-m", "edgesplit.cli.main"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


def test_up_with_a_bad_key_exits_2_naming_file_line_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("model: builtin:llama-tiny\nnodes:\n  - id: device\n    source: true\n    trustd: true\n")
    result = run_cli("up", str(bad))
    assert result.returncode == 2
    allowed = "id, trusted, source, memory, address"
    assert (
        result.stderr.strip()
        == f"edgesplit: error: {bad}:5: nodes.0.trustd: unknown key (allowed: {allowed})"
    )
    assert "Traceback" not in result.stderr


def test_gateway_needs_node_addresses(tmp_path: Path) -> None:
    cluster = tmp_path / "c.yaml"
    cluster.write_text("model: builtin:llama-tiny\nnodes:\n  - {id: device, source: true, trusted: true}\n")
    result = run_cli("gateway", str(cluster))
    assert result.returncode == 2
    assert "device need an `address: HOST:PORT`" in result.stderr


def test_up_with_a_missing_file_exits_2(tmp_path: Path) -> None:
    result = run_cli("up", str(tmp_path / "none.yaml"))
    assert result.returncode == 2 and "cannot read cluster file" in result.stderr


def unused_address() -> str:
    """A loopback address nobody listens on: a port the kernel picked, then closed again."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def test_orchestrator_that_reaches_no_node_exits_non_zero_naming_them(tmp_path: Path) -> None:
    """Wrong addresses (or certificates): not a silent orchestrator that only logs, but exit 1 after the
    bounded wait, with one line naming every node it could not reach."""
    addresses = {"device": unused_address(), "mec1": unused_address()}
    cluster = tmp_path / "c.yaml"
    nodes = [
        {"id": "device", "source": True, "trusted": True, "address": addresses["device"]},
        {"id": "mec1", "address": addresses["mec1"]},
    ]
    cluster.write_text(yaml.safe_dump({"model": "builtin:llama-tiny", "nodes": nodes}))
    started = time.monotonic()
    result = run_cli("orchestrator", str(cluster), "--state-dir", str(tmp_path / "s"), "--start-timeout", "1")
    took = time.monotonic() - started
    assert result.returncode == 1, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("edgesplit: error: the orchestrator reached no node within 1 s: "), last
    for node_id, address in addresses.items():
        assert f"{node_id} at {address} (" in last, last
    assert "Traceback" not in result.stderr
    assert took < 60, took  # bounded by the flag, not the 60 s default


def test_improve_interval_must_be_positive(tmp_path: Path) -> None:
    result = run_cli("orchestrator", str(tmp_path / "c.yaml"), "--improve-interval", "0")
    assert result.returncode == 2
    assert "--improve-interval" in result.stderr and "Traceback" not in result.stderr


def _wait_file(path: Path, proc: subprocess.Popen[bytes], timeout_s: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists():
            try:
                return dict(json.loads(path.read_text()))
            except json.JSONDecodeError:
                pass
        assert proc.poll() is None, f"{proc.args} exited with {proc.returncode}"
        time.sleep(0.1)
    raise AssertionError(f"{path} did not appear within {timeout_s} s")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in reversed(procs):  # stop by PID, wait, then make sure
        if proc.poll() is None:
            proc.terminate()
    for proc in reversed(procs):
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_services_one_at_a_time_form_a_cluster(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """What a multi-machine deployment does, on loopback: nodes, then gateway, then orchestrator."""
    # The operator creates the orchestrator's key first; every node is started trusting its public half.
    state = tmp_path / "orchestrator"
    public_key = public_key_text(load_or_create_private_key(state / "orchestrator_ed25519.pem"))
    addresses = {}
    for node_id in ("device", "edge"):
        ready = tmp_path / f"{node_id}.ready"
        proc = subprocess.Popen(
            [
                *CLI,
                "node",
                "--orchestrator-public-key",
                public_key,
                "--id",
                node_id,
                "--model",
                "builtin:llama-tiny",
                "--listen",
                "127.0.0.1:0",
                "--ready-file",
                str(ready),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(proc)
        addresses[node_id] = (ready, proc)
    nodes = []
    for node_id, (ready, proc) in addresses.items():
        address = _wait_file(ready, proc, 120)["address"]
        nodes.append(
            {
                "id": node_id,
                "trusted": node_id == "device",
                "source": node_id == "device",
                "memory": "600KiB" if node_id == "device" else "1GiB",
                "address": address,
            }
        )
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(
        yaml.safe_dump(
            {
                "model": "builtin:llama-tiny",
                "nodes": nodes,
                "links": {"default": {"bandwidth_mbps": 1000, "rtt_ms": 1}},
            }
        )
    )
    gw_ready = tmp_path / "gateway.ready"
    gateway = subprocess.Popen(
        [*CLI, "gateway", str(cluster), "--listen", "127.0.0.1:0", "--ready-file", str(gw_ready)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    processes.append(gateway)
    url = str(_wait_file(gw_ready, gateway, 120)["url"])
    assert httpx.get(f"{url}/health").status_code == 503  # serving, but no plan yet
    orch_ready = tmp_path / "orchestrator.ready"
    orchestrator = subprocess.Popen(
        [
            *CLI,
            "orchestrator",
            str(cluster),
            "--gateway",
            url,
            "--ready-file",
            str(orch_ready),
            "--state-dir",
            str(state),
        ],
        stdout=(tmp_path / "orchestrator.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    processes.append(orchestrator)
    plan = _wait_file(orch_ready, orchestrator, 120)
    used = {s["node"] for s in plan["segments"]}  # type: ignore[union-attr]
    assert used == {
        "device",
        "edge",
    }  # 600 KiB holds the privacy blocks (embedding, layer 0, head: 453 KiB) but not the 1 MiB model
    assert httpx.get(f"{url}/health").status_code == 200
    resp = httpx.post(
        f"{url}/v1/completions",
        json={"model": "builtin:llama-tiny", "prompt": "Hi", "max_tokens": 4},
        timeout=60,
    )
    assert resp.status_code == 200 and resp.json()["usage"]["completion_tokens"] == 4
    for proc in processes:
        assert proc.poll() is None and pid_alive(proc.pid)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_sigterm_during_start_up_stops_every_child() -> None:
    import psutil

    example = Path(__file__).parents[2] / "examples" / "mec-3node.yaml"
    up = subprocess.Popen(
        [*CLI, "up", str(example)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        parent = psutil.Process(up.pid)
        deadline = time.monotonic() + 60
        while len(parent.children()) < 3:  # the three node agents are starting
            assert up.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        children = parent.children(recursive=True)
        up.terminate()
        assert up.wait(timeout=40) == 130
        assert [c.pid for c in children if pid_alive(c.pid)] == []
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(timeout=10)
