"""Link shaping arithmetic on a fake clock: serialisation at the rate, one-way delay, FIFO queueing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgesplit.node.config import EmulationConfig, LinkEmulationConfig
from edgesplit.transport.link import LinkShaper, LinkSpec


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@given(mbps=st.floats(0.1, 1000), rtt_ms=st.floats(0, 200), nbytes=st.integers(0, 10_000_000))
def test_idle_link_delay_is_half_rtt_plus_serialisation(mbps: float, rtt_ms: float, nbytes: int) -> None:
    spec = LinkEmulationConfig(bandwidth_mbps=mbps, rtt_ms=rtt_ms).spec()
    shaper = LinkShaper(spec, clock=FakeClock())
    expected = rtt_ms / 2000 + nbytes * 8 / (mbps * 1e6)
    assert shaper.charge(nbytes) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_back_to_back_messages_queue_fifo_and_idle_time_repays_debt() -> None:
    clock = FakeClock()
    shaper = LinkShaper(LinkSpec(bandwidth_bps=8e6, rtt_s=0.02), clock=clock)  # 1 MB/s
    assert shaper.charge(100_000) == pytest.approx(0.01 + 0.1)
    assert shaper.charge(100_000) == pytest.approx(0.01 + 0.2)  # waits behind the first
    clock.now += 1.0  # link drained
    assert shaper.charge(100_000) == pytest.approx(0.01 + 0.1)


def test_burst_lets_a_small_message_pass_without_serialisation() -> None:
    clock = FakeClock()
    shaper = LinkShaper(LinkSpec(bandwidth_bps=8e6, rtt_s=0.0, burst_bytes=50_000), clock=clock)
    assert shaper.charge(40_000) == 0.0
    assert shaper.charge(40_000) == pytest.approx(30_000 / 1e6)


def test_jitter_stays_within_bounds_and_never_negative() -> None:
    shaper = LinkShaper(LinkSpec(rtt_s=0.002, jitter_s=0.005), clock=FakeClock(), seed=3)
    delays = [shaper.charge(0) for _ in range(500)]
    assert min(delays) >= 0.0 and max(delays) <= 0.006
    assert len({round(d, 6) for d in delays}) > 100


def test_emulated_duration_uses_profile_speed_and_load() -> None:
    emulation = EmulationConfig.model_validate(
        {
            "speed_factor": 0.5,
            "background_load": 0.5,
            "block_profile": {1: {"prefill_ms_per_token": 2, "decode_ms": 3}},
        }
    )
    # blocks 0:3, one profiled block: 10 prompt tokens -> 20 ms; / 0.5 / 0.5 -> 80 ms
    assert emulation.emulated_duration_s(0, 3, 10, 0, real_s=0.001) == pytest.approx(0.080)
    assert emulation.emulated_duration_s(0, 3, 0, 4, real_s=0.001) == pytest.approx(0.012)
    # no profile for blocks 5:7: the measured time, slowed
    assert emulation.emulated_duration_s(5, 7, 0, 1, real_s=0.01) == pytest.approx(0.04)
    # never faster than reality
    assert emulation.emulated_duration_s(0, 3, 0, 1, real_s=1.0) == 1.0
