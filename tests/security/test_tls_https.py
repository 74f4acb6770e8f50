"""`edgesplit gateway --https`: the HTTP API over TLS with the gateway's certificate (a real process)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from edgesplit.cluster.loader import load_cluster
from edgesplit.cluster.roles import gateway_config
from edgesplit.model.builtin import resolve_model
from edgesplit.security.pki import Role, init_ca, issue

EXAMPLE = Path(__file__).parents[2] / "examples" / "mec-3node.yaml"
READY_TIMEOUT_S = 90.0


def _wait_ready(proc: subprocess.Popen[bytes], ready: Path, log: Path) -> str:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"gateway not ready (exit {proc.poll()}):\n{log.read_text()}")
        time.sleep(0.05)
    return str(json.loads(ready.read_text())["url"])


def test_gateway_https_serves_only_clients_that_trust_the_cluster_ca(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    init_ca(pki)
    cluster = load_cluster(EXAMPLE)
    for node in cluster.nodes:
        issue(pki, node.id, Role.NODE, trusted=node.trusted)
    issue(pki, "gateway", Role.GATEWAY, hosts=("127.0.0.1",))
    addresses = {n.id: f"127.0.0.1:{i + 1}" for i, n in enumerate(cluster.nodes)}  # nodes never dialled
    config = tmp_path / "gateway.json"
    config.write_text(gateway_config(cluster, resolve_model(cluster.model), addresses).model_dump_json())
    ready, log = tmp_path / "gateway.ready", tmp_path / "gateway.log"
    args = ["gateway", "--config", str(config), "--listen", "127.0.0.1:0", "--ready-file", str(ready)]
    args += ["--tls-dir", str(pki), "--https"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgesplit.cli.main", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = _wait_ready(proc, ready, log)
        assert url.startswith("https://127.0.0.1:")
        trusting = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        models = httpx.get(f"{url}/v1/models", verify=trusting, timeout=10.0)
        assert models.status_code == 200 and models.json()["data"][0]["id"] == cluster.model
        with pytest.raises(httpx.ConnectError):  # the system roots do not know the cluster CA
            httpx.get(f"{url}/v1/models", timeout=10.0)
        with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port gets no answer
            httpx.get(url.replace("https://", "http://") + "/v1/models", timeout=10.0)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
