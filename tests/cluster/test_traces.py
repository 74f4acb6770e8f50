"""Emulation traces of the cluster file: values over time (pure), and replay on a live node agent."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgesplit.cluster.launcher import TracePlayer
from edgesplit.cluster.loader import parse_cluster
from edgesplit.cluster.roles import node_emulation, trace_times

TRACED = """\
model: builtin:llama-tiny
nodes:
  - {id: device, source: true, trusted: true}
  - {id: mec1, trusted: true}
emulation:
  nodes:
    device:
      background_load: 0.1
      load_trace: [{at_s: 0.4, load: 0.6}, {at_s: 10, load: 0.2}]
  links:
    - a: device
      b: mec1
      bandwidth_mbps: 400
      rtt_ms: 2
      trace: [{at_s: 5, bandwidth_mbps: 10, rtt_ms: 40}, {at_s: 20, rtt_ms: 5}]
"""


def test_values_follow_the_last_trace_point() -> None:
    cfg = parse_cluster(TRACED)
    assert trace_times(cfg) == [0.4, 5, 10, 20]
    at = {t: node_emulation(cfg, "device", t) for t in (0, 0.4, 5, 12, 25)}
    assert [at[t]["background_load"] for t in (0, 0.4, 5, 12, 25)] == [0.1, 0.6, 0.6, 0.2, 0.2]
    links = [(at[t]["links"]["mec1"]["bandwidth_mbps"], at[t]["links"]["mec1"]["rtt_ms"]) for t in (0, 5, 25)]
    assert links == [(400, 2), (10, 40), (10, 5)]
    # Links are shaped both ways: mec1 sends to device over the same traced link.
    assert node_emulation(cfg, "mec1", 6)["links"]["device"] == {
        "bandwidth_mbps": 10,
        "rtt_ms": 40,
        "jitter_ms": 0,
    }


def test_no_emulation_means_no_traces() -> None:
    cfg = parse_cluster("model: m\nnodes:\n  - {id: a, source: true}\n")
    assert trace_times(cfg) == [] and node_emulation(cfg, "a", 3.0) == {}


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_player_applies_a_load_change_on_a_live_node(tmp_path: Path) -> None:
    ready = tmp_path / "device.ready"
    node = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgesplit.cli.main",
            "node",
            "--id",
            "device",
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
    try:
        deadline = time.monotonic() + 90
        while not ready.exists():
            assert node.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        address = json.loads(ready.read_text())["address"]
        cfg = parse_cluster(
            TRACED.replace("{at_s: 10, load: 0.2}", "{at_s: 0.8, load: 0.2}").replace("at_s: 5,", "at_s: 60,")
        )
        player = TracePlayer(cfg, {"device": address, "mec1": "127.0.0.1:1"})
        player.start()
        deadline = time.monotonic() + 10
        while len(player.applied) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        player.stop()  # the 60 s link change is still pending: stopping must not wait for it
        player.join(timeout=5)
        assert not player.is_alive()
        assert player.applied == [(0.4, "device"), (0.8, "device")]
    finally:
        node.terminate()
        node.wait(timeout=20)
