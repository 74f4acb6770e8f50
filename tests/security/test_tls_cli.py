"""The services refuse a cluster file that grants trust the node certificates do not (exit 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edgesplit.security.pki import Role, init_ca, issue

EXAMPLE = Path(__file__).parents[2] / "examples" / "mec-3node.yaml"


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    """Certificates where cloud is untrusted, and a copy of the example that calls cloud trusted."""
    pki = tmp_path / "pki"
    init_ca(pki)
    issue(pki, "device", Role.NODE, trusted=True)
    issue(pki, "mec1", Role.NODE, trusted=True)
    issue(pki, "cloud", Role.NODE, trusted=False)
    issue(pki, "gateway", Role.GATEWAY)
    issue(pki, "orchestrator", Role.ORCHESTRATOR)
    cluster = yaml.safe_load(EXAMPLE.read_text())
    for port, node in enumerate(cluster["nodes"], start=1):
        node["address"] = f"127.0.0.1:{port}"  # never dialled: the check comes first
        if node["id"] == "cloud":
            node["trusted"] = True
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(cluster))
    return path, pki


@pytest.mark.parametrize("service", ["gateway", "orchestrator"])
def test_a_trust_claim_without_a_matching_certificate_is_refused(
    setup: tuple[Path, Path], service: str
) -> None:
    cluster, pki = setup
    args = [str(cluster), "--tls-dir", str(pki)]
    if service == "orchestrator":
        args += ["--state-dir", str(pki.parent / "state")]
    done = subprocess.run(
        [sys.executable, "-m", "edgesplit.cli.main", service, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "cloud: its certificate says untrusted" in done.stderr
