"""`edgesplit node` argument handling: YAML plus flags, clear one-line errors naming the bad key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgesplit.cli.node_cmd import build_config
from edgesplit.errors import ConfigError


def test_flags_override_yaml_and_emulation_is_read(tmp_path: Path) -> None:
    path = tmp_path / "node.yaml"
    path.write_text(
        "node_id: mec1\nlisten: 0.0.0.0:5000\nmodel: builtin:llama-tiny\nsegments: [[0, 3]]\n"
        "emulation:\n  speed_factor: 0.5\n  links:\n    cloud: {bandwidth_mbps: 10, rtt_ms: 40}\n"
    )
    config = build_config(path, None, "127.0.0.1:0", None, None, None, "0:2,2:4", None, None)
    assert config.node_id == "mec1" and config.listen == "127.0.0.1:0"
    assert config.segments == [(0, 2), (2, 4)]
    assert config.emulation.speed_factor == 0.5
    assert config.emulation.link_specs()["cloud"].bandwidth_bps == 10e6


@pytest.mark.parametrize(
    ("yaml_text", "segments", "needle"),
    [
        ("node_id: a\nemulation: {speed_factr: 2}\n", None, "emulation.speed_factr"),
        ("node_id: a\nemulation: {background_load: 1.5}\n", None, "emulation.background_load"),
        ("node_id: a\n", "3-5", "START:END"),
        ("- a\n", None, "mapping"),
    ],
)
def test_bad_node_config_names_the_problem(
    tmp_path: Path, yaml_text: str, segments: str | None, needle: str
) -> None:
    path = tmp_path / "node.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        build_config(path, None, None, None, None, None, segments, None, None)


def test_cli_exits_2_with_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edgesplit.cli.main", "node", "--id", "x", "--segments", "5:2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("edgesplit: error: bad node config key `segments`")
    assert len(proc.stderr.strip().splitlines()) == 1
