"""`edgesplit up` is secure by default: every node of a local cluster speaks only mTLS (real processes)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from edgesplit.cluster.launcher import LocalCluster
from edgesplit.cluster.loader import load_cluster
from edgesplit.errors import EdgesplitError
from edgesplit.model.builtin import resolve_model
from edgesplit.security.pki import Role, load_cert, verify_issued
from edgesplit.transport.node_admin import NodeAdmin

EXAMPLE = Path(__file__).parents[2] / "examples" / "mec-3node.yaml"


async def _ping(address: str, admin: NodeAdmin) -> bytes:
    try:
        return await admin.ping(b"up?", timeout_s=5.0)
    finally:
        await admin.close()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_local_cluster_nodes_refuse_plain_grpc_and_serve_over_mtls() -> None:
    cluster = load_cluster(EXAMPLE)
    local = LocalCluster(cluster, resolve_model(cluster.model))
    try:
        local.start(180)
        assert local.admin_tls is not None
        ca = load_cert(local.pki_dir / "ca.crt")
        for node in cluster.nodes:  # each node's certificate carries the trust the file declares
            who = verify_issued(load_cert(local.pki_dir / f"{node.id}.crt"), ca)
            assert (who.name, who.role, who.trusted) == (node.id, Role.NODE, node.trusted)
        for node_id, address in local.addresses.items():
            assert asyncio.run(_ping(address, NodeAdmin(address, local.admin_tls))) == b"up?", node_id
            with pytest.raises(EdgesplitError):
                asyncio.run(_ping(address, NodeAdmin(address)))
        body = {"model": cluster.model, "prompt": "Hello", "max_tokens": 4, "temperature": 0}
        done = httpx.post(f"{local.gateway_url}/v1/completions", json=body, timeout=60)
        assert done.status_code == 200 and done.json()["usage"]["completion_tokens"] == 4
    finally:
        local.stop()
