"""Shared values for gateway tests: the served model id, the nodes, a 3-hop plan."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from gateway_fakes import FakeChain

from edgesplit.gateway.config import GatewayNodeConfig
from edgesplit.gateway.routes import CommittedPlan, route_from_segments

MODEL = "builtin:llama-tiny"

NODES = [
    GatewayNodeConfig(id="device", address="127.0.0.1:1", trusted=True, source=True),
    GatewayNodeConfig(id="mec1", address="127.0.0.1:2", trusted=True),
    GatewayNodeConfig(id="cloud", address="127.0.0.1:3", trusted=False),
]


def three_hop_plan(epoch: int = 1, num_blocks: int = 6) -> CommittedPlan:
    """device 0:2 → mec1 2:5 → device 5:B: privacy blocks (0, 1, head) stay trusted."""
    return CommittedPlan(
        route_from_segments(
            epoch,
            [
                ("device", "127.0.0.1:1", 0, 2),
                ("mec1", "127.0.0.1:2", 2, num_blocks - 1),
                ("device", "127.0.0.1:1", num_blocks - 1, num_blocks),
            ],
        )
    )


GatewayFactory = Callable[..., tuple[TestClient, FakeChain]]
