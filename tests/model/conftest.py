"""Tiny checkpoints of every family, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
from model_factories import FAMILIES, make_checkpoint


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """family → checkpoint folder (3 layers, hidden 64, fixed seed)."""
    root = tmp_path_factory.mktemp("ckpt")
    return {family: make_checkpoint(root / family, family) for family in FAMILIES}


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> None:
    """Tiny models run fastest on one thread; more threads only fight the other test workers."""
    import torch

    torch.set_num_threads(1)
