"""Fixtures for gateway tests: the built-in tiny checkpoint's tokenizer, a fake chain, an app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from gateway_factories import MODEL, NODES, GatewayFactory, three_hop_plan
from gateway_fakes import FakeChain

from edgesplit.gateway.app import create_app
from edgesplit.gateway.config import GatewayConfig
from edgesplit.gateway.routes import CommittedPlan, RouteBook
from edgesplit.gateway.text import TextCodec


@pytest.fixture(scope="session")
def model_dir() -> Path:
    from edgesplit.model.builtin import resolve_model

    return resolve_model(MODEL)


@pytest.fixture(scope="session")
def codec(model_dir: Path) -> TextCodec:
    return TextCodec.from_checkpoint(model_dir)


@pytest.fixture
def make_gateway(model_dir: Path, codec: TextCodec) -> Iterator[GatewayFactory]:
    """``make_gateway(chain=None, plan=three_hop_plan(), **config)`` → (TestClient, chain)."""
    clients: list[TestClient] = []

    def factory(
        chain: FakeChain | None = None, plan: CommittedPlan | None = None, commit: bool = True, **config: Any
    ) -> tuple[TestClient, FakeChain]:
        chain = chain or FakeChain(vocab=codec.vocab_size, eos_id=min(codec.eos_token_ids))
        cfg = GatewayConfig(
            model_name=MODEL,
            model_path=model_dir,
            nodes=NODES,
            privacy_blocks=[0, 1, codec.num_blocks - 1],
            **config,
        )
        routes = RouteBook(frozenset({"device", "mec1"}), frozenset(cfg.privacy_blocks))
        if commit:
            routes.commit(plan or three_hop_plan(num_blocks=codec.num_blocks))
        client = TestClient(create_app(cfg, chain, codec=codec, routes=routes))
        client.__enter__()
        clients.append(client)
        return client, chain

    yield factory
    for client in clients:
        client.__exit__(None, None, None)
