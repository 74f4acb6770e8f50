"""mTLS on the node's gRPC server and the gateway's result sink (in-process, 127.0.0.1:0).

Only certificates of the cluster CA connect; control calls need an orchestrator/admin certificate;
a node's trust is its certificate's, whatever its config claims.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from dataplane_nodes import running_node

from edgesplit.errors import ConfigError, EdgesplitError, PlanRejectedError
from edgesplit.node.agent import NodeAgent
from edgesplit.node.config import NodeConfig
from edgesplit.security.pki import Role, init_ca, issue
from edgesplit.transport.grpc_client import GrpcSegmentClient
from edgesplit.transport.node_admin import NodeAdmin
from edgesplit.transport.tls import TlsConfig, TlsFilesConfig
from edgesplit.wire.messages import StepOutcome
from edgesplit.wire.stubs import NodeStub, SinkStub, open_channel

pytestmark = pytest.mark.anyio
CALL_TIMEOUT_S = 5.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """The cluster CA with a trusted node, an untrusted node, a gateway and an orchestrator; and a
    rogue CA whose certificates copy the same names."""
    ours, rogue = tmp_path / "pki", tmp_path / "rogue"
    for directory in (ours, rogue):
        init_ca(directory)
        issue(directory, "n0", Role.NODE, trusted=True)
        issue(directory, "gw", Role.GATEWAY)
    issue(ours, "n1", Role.NODE)
    issue(ours, "orch", Role.ORCHESTRATOR)
    return {"ours": ours, "rogue": rogue}


def _tls(directory: Path, name: str) -> TlsConfig:
    return TlsConfig.load(TlsFilesConfig.in_dir(directory, name))


class _NoModel:
    """A segment source for nodes these tests never ask to load anything."""

    def load(self, start: int, end: int) -> object:
        raise AssertionError("no segment should be loaded")


def _node_config(pki: dict[str, Path], name: str = "n0", **extra: object) -> NodeConfig:
    return NodeConfig(node_id=name, tls=TlsFilesConfig.in_dir(pki["ours"], name), **extra)  # type: ignore[arg-type]


async def test_only_cluster_certificates_connect_to_a_node(pki: dict[str, Path]) -> None:
    async with running_node(_node_config(pki), _NoModel()) as node:  # type: ignore[arg-type]
        member = NodeAdmin(node.address, _tls(pki["ours"], "gw"))
        assert await member.ping(b"hello", CALL_TIMEOUT_S) == b"hello"
        await member.close()
        outsiders = {
            "plain gRPC": None,
            "rogue CA": _tls(pki["rogue"], "gw").channel_credentials,
            "no client certificate": grpc.ssl_channel_credentials(
                root_certificates=(pki["ours"] / "ca.crt").read_bytes()
            ),
        }
        for label, credentials in outsiders.items():
            channel = open_channel(node.address, credentials)
            try:
                with pytest.raises(EdgesplitError) as failed:
                    await NodeStub(channel, node.address).ping(b"hello", CALL_TIMEOUT_S)
                assert "UNAVAILABLE" in str(failed.value) or "DEADLINE" in str(failed.value), label
            finally:
                await channel.close()


async def test_a_cluster_member_refuses_a_server_from_another_ca(pki: dict[str, Path]) -> None:
    rogue = NodeConfig(node_id="n0", tls=TlsFilesConfig.in_dir(pki["rogue"], "n0"))
    async with running_node(rogue, _NoModel()) as node:  # type: ignore[arg-type]
        member = NodeAdmin(node.address, _tls(pki["ours"], "gw"))
        try:
            with pytest.raises(EdgesplitError, match=r"UNAVAILABLE|DEADLINE"):
                await member.ping(b"secret", CALL_TIMEOUT_S)
        finally:
            await member.close()


async def test_control_calls_need_an_orchestrator_certificate(pki: dict[str, Path]) -> None:
    async with running_node(_node_config(pki), _NoModel()) as node:  # type: ignore[arg-type]
        for name in ("n1", "gw"):  # valid cluster certificates, wrong role
            admin = NodeAdmin(node.address, _tls(pki["ours"], name))
            try:
                with pytest.raises(PlanRejectedError, match="admin, orchestrator certificates"):
                    await admin.commit(1, CALL_TIMEOUT_S)
                assert await admin.ping(b"ok", CALL_TIMEOUT_S) == b"ok"  # open calls still work
            finally:
                await admin.close()
        orchestrator = NodeAdmin(node.address, _tls(pki["ours"], "orch"))
        try:
            with pytest.raises(PlanRejectedError) as refused:  # past the role gate: the plan gate speaks
                await orchestrator.commit(1, CALL_TIMEOUT_S)
            assert "certificates" not in str(refused.value)
        finally:
            await orchestrator.close()


async def test_the_gateway_sink_takes_results_only_from_cluster_nodes(pki: dict[str, Path]) -> None:
    client = GrpcSegmentClient(tls=_tls(pki["ours"], "gw"))
    address = await client.start()
    outcome = StepOutcome(session_id="s", step_id=1, token_id=7)
    try:
        callers = {
            "rogue": (_tls(pki["rogue"], "n0").channel_credentials, r"UNAVAILABLE|DEADLINE"),
            "orchestrator": (_tls(pki["ours"], "orch").channel_credentials, "node certificates"),
        }
        for credentials, refusal in callers.values():
            channel = open_channel(address, credentials)
            try:
                with pytest.raises(EdgesplitError, match=refusal):
                    await SinkStub(channel, address).deliver(outcome, CALL_TIMEOUT_S)
            finally:
                await channel.close()
        channel = open_channel(address, _tls(pki["ours"], "n1").channel_credentials)
        try:
            await SinkStub(channel, address).deliver(outcome, CALL_TIMEOUT_S)  # a node may deliver
        finally:
            await channel.close()
    finally:
        await client.close()


def test_a_node_config_cannot_grant_trust_its_certificate_lacks(pki: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="its certificate says untrusted"):
        NodeAgent(_node_config(pki, "n1", trusted=True), _NoModel())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="certificate of node 'n0'"):
        NodeAgent(NodeConfig(node_id="n1", tls=TlsFilesConfig.in_dir(pki["ours"], "n0")), _NoModel())  # type: ignore[arg-type]
    # The certificate, not the config, is the source of trust: a config silent about it still gets it.
    certified = NodeAgent(_node_config(pki, "n0", trusted=False), _NoModel())  # type: ignore[arg-type]
    assert certified.service.trusted is True
    assert NodeAgent(_node_config(pki, "n1"), _NoModel()).service.trusted is False  # type: ignore[arg-type]
