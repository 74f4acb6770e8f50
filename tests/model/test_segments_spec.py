"""Unit tier: segment specs tile 0:B in order, or fail with one line naming the problem."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgesplit.errors import SegmentSpecError
from edgesplit.model.segments_spec import format_segments, parse_segments


@given(st.integers(3, 40).flatmap(lambda n: st.tuples(st.just(n), st.sets(st.integers(1, n - 1)))))
def test_any_tiling_round_trips(case: tuple[int, set[int]]) -> None:
    n, cuts = case
    bounds = [0, *sorted(cuts), n]
    segments = list(itertools.pairwise(bounds))
    assert parse_segments(format_segments(segments), n) == segments


def test_default_is_one_segment() -> None:
    assert parse_segments(None, 7) == [(0, 7)]
    assert parse_segments(" ", 7) == [(0, 7)]


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("0:3,2:7", "overlaps"),
        ("0:3,4:7", "gap: blocks 3:4"),
        ("0:3,3:6", "gap: blocks 6:7"),
        ("0:3,3:9", "out of range"),
        ("-1:3,3:7", "out of range"),
        ("0:3,3:3,3:7", "empty"),
        ("0-3,3:7", "START:END"),
        ("0:a,3:7", "integer"),
        ("1:7", "gap: blocks 0:1"),
    ],
)
def test_bad_specs_name_the_problem(spec: str, needle: str) -> None:
    with pytest.raises(SegmentSpecError, match=needle) as info:
        parse_segments(spec, 7)
    assert "\n" not in str(info.value)
