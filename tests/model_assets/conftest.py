"""Built-in tiny models of every family, built once per test session through the public builder."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgesplit.model.builtin import ARCHS, init_model


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """arch → folder of ``edgesplit model init --arch ARCH --preset tiny --seed 0``."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    root = tmp_path_factory.mktemp("builtin")
    return {arch: init_model(root / arch, arch, "tiny", seed=0) for arch in ARCHS}


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> None:
    """Tiny models run fastest on one thread; more threads only fight other processes for 2 cores."""
    import torch

    torch.set_num_threads(1)
