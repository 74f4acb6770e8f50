"""An in-process chain of segment runners: prefill + greedy/sampled decode for `generate` and benchmarks.

No threads, no sockets; the gateway runs the same steps over a SegmentClient instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from edgesplit.errors import SessionError
from edgesplit.model.loader import BlockModel
from edgesplit.model.segment import SegmentRunner
from edgesplit.model.steps import SamplingParams, SegmentOutput, SegmentStep


class SegmentChain:
    """Runners covering 0:B in order; one step of one session travels through all of them."""

    def __init__(self, runners: Sequence[SegmentRunner]) -> None:
        self.runners = list(runners)

    @classmethod
    def from_block_model(cls, block_model: BlockModel, segments: Iterable[tuple[int, int]]) -> SegmentChain:
        """Runners over one loaded model, sharing its weights."""
        return cls([SegmentRunner(block_model, start, end) for start, end in segments])

    def step(self, session_id: str, token_ids: torch.Tensor, position: int, sampling: SamplingParams) -> int:
        """Feed new token ids (T,) at ``position``; return the sampled next token."""
        x = token_ids
        for runner in self.runners:
            out = _only(runner.step([SegmentStep(session_id, x, position, sampling)]))
            if out.hidden is not None:
                x = out.hidden
        if out.token_id is None:
            raise SessionError(f"the chain's last segment ends at {self.runners[-1].end}, not at the head")
        return out.token_id

    def generate(
        self,
        prompt_ids: Sequence[int],
        max_tokens: int,
        sampling: SamplingParams = SamplingParams(),
        eos_token_ids: Iterable[int] = (),
        session_id: str = "generate",
    ) -> list[int]:
        """The generated tokens (at most ``max_tokens``; stops after an EOS token, which is kept)."""
        stop = set(eos_token_ids)
        generated: list[int] = []
        ids = torch.tensor(list(prompt_ids), dtype=torch.long)
        position = 0
        try:
            while len(generated) < max_tokens:
                token = self.step(session_id, ids, position, sampling)
                generated.append(token)
                if token in stop:
                    break
                position += len(ids)
                ids = torch.tensor([token], dtype=torch.long)
        finally:
            for runner in self.runners:
                runner.drop(session_id)
        return generated


def _only(outputs: list[SegmentOutput]) -> SegmentOutput:
    out = outputs[0]
    if out.error is not None:
        raise out.error
    return out
