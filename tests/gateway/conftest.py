"""Fixtures for gateway tests: the built-in tiny checkpoint's tokenizer, a fake chain, an app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from gateway_factories import MODEL, GatewayFactory, fake_gateway_app
from gateway_fakes import FakeChain

from edgesplit.gateway.routes import CommittedPlan
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
        client = TestClient(fake_gateway_app(chain, model_dir, codec, plan, commit, **config))
        client.__enter__()
        clients.append(client)
        return client, chain

    yield factory
    for client in clients:
        client.__exit__(None, None, None)
