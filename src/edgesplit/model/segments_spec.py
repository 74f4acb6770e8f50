"""Parsing and checking a chain of segments written ``0:3,3:9,9:14`` (half-open block ranges).

Pure: shared by `edgesplit generate` and the gateway. Errors are SegmentSpecError, one line each.
"""

from __future__ import annotations

from edgesplit.errors import SegmentSpecError


def parse_segments(spec: str | None, num_blocks: int) -> list[tuple[int, int]]:
    """``"0:3,3:9,9:14"`` → [(0, 3), (3, 9), (9, 14)]; None or "" → one segment over all blocks.

    The segments must be non-empty, in order, and cover 0:num_blocks with no gap or overlap.
    """
    if spec is None or not spec.strip():
        return [(0, num_blocks)]
    segments: list[tuple[int, int]] = []
    for part in spec.split(","):
        text = part.strip()
        start_text, sep, end_text = text.partition(":")
        if not sep:
            raise SegmentSpecError(f"segment {text!r} is not START:END (e.g. 0:3,3:{num_blocks})")
        try:
            start, end = int(start_text), int(end_text)
        except ValueError:
            raise SegmentSpecError(f"segment {text!r} is not START:END with integer block indices") from None
        segments.append((start, end))
    check_segments(segments, num_blocks)
    return segments


def check_segments(segments: list[tuple[int, int]], num_blocks: int) -> None:
    """SegmentSpecError unless ``segments`` tile 0:num_blocks in order."""
    if not segments:
        raise SegmentSpecError(f"no segments given; the model has blocks 0:{num_blocks}")
    expected = 0
    for start, end in segments:
        if start < 0 or end > num_blocks:
            raise SegmentSpecError(
                f"segment {start}:{end} is out of range: the model has blocks 0:{num_blocks}"
            )
        if end <= start:
            raise SegmentSpecError(f"segment {start}:{end} is empty (end must exceed start)")
        if start < expected:
            raise SegmentSpecError(
                f"segment {start}:{end} overlaps the previous one, which ends at {expected}"
            )
        if start > expected:
            raise SegmentSpecError(f"gap: blocks {expected}:{start} are in no segment")
        expected = end
    if expected != num_blocks:
        raise SegmentSpecError(
            f"gap: blocks {expected}:{num_blocks} are in no segment (the model has {num_blocks})"
        )


def format_segments(segments: list[tuple[int, int]]) -> str:
    """[(0, 3), (3, 14)] → ``"0:3,3:14"``."""
    return ",".join(f"{start}:{end}" for start, end in segments)
