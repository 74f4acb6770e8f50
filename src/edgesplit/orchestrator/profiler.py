"""Capacity profiling (CP): turns node, link and gateway measurements into the environment state E(t).

Pure maths over what was measured — never reads emulation parameters (DESIGN §3 rule 1), never
touches a clock, socket or log: the caller passes the orchestrator's own receive time ``now_s``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# Utilisation above this is treated as this when dividing by (1 - util): a node reported 100 % busy
# would otherwise look infinitely fast or slow and one report would swing the planner.
_UTIL_CAP = 0.95


@dataclass(frozen=True)
class NodeTelemetry:
    """What one node reports every interval; durations it measured itself, never timestamps.

    ``block_decode_s`` / ``block_prefill_s`` map a block index to the seconds per token the node
    measured for it (profiled at join, then refreshed from real traffic). ``busy_s`` is how long the
    node spent running steps during the ``interval_s`` the report covers, so that utilisation caused
    by others (background load) can be told apart from the node's own serving work. ``seq`` grows by
    one per report; a report whose ``seq`` is not newer than the last one seen is ignored.
    """

    node_id: str
    seq: int
    utilization: float
    interval_s: float = 1.0
    busy_s: float = 0.0
    rss_bytes: int = 0
    mem_available_bytes: int = 0
    block_decode_s: Mapping[int, float] = field(default_factory=dict)
    block_prefill_s: Mapping[int, float] = field(default_factory=dict)
    activation_bytes: int = 0
    queue_depth: int = 0
    sessions: int = 0
    epoch: int = 0
    loaded_blocks: frozenset[int] = frozenset()
    cached_blocks: frozenset[int] = frozenset()
    shard_fetch_bps: float | None = None
    background: float | None = None
    """Utilisation by other work, when the node measures it apart; else ``utilization − busy``."""
    profile_decode_s: Mapping[int, float] = field(default_factory=dict)
    """Join-time profile (block → seconds per decode step), used until live timings exist."""
    profile_utilization: float = 0.0
    restarted: bool = False
    """The node process restarted since its previous report: its ``seq`` counts from 1 again."""


@dataclass(frozen=True)
class LinkObservation:
    """One measurement of the link a–b (undirected): a probe RTT and/or an observed transfer, or a
    bandwidth a node's probes already derived (Δbytes / Δtime of a large and a small probe)."""

    a: str
    b: str
    rtt_s: float | None = None
    transfer_bytes: int = 0
    transfer_s: float = 0.0
    bandwidth_bps: float | None = None


@dataclass(frozen=True)
class LatencyObservation:
    """One decode step's end-to-end latency as the gateway measured it, tagged with the plan epoch."""

    latency_s: float
    epoch: int = 0


@dataclass(frozen=True)
class WorkloadObservation:
    """The gateway's view of demand: aggregate token rate, live sessions, their mean context length."""

    tokens_per_s: float
    live_sessions: int
    mean_context_tokens: float


@dataclass(frozen=True)
class NodeProfile:
    """A node's smoothed capacity profile. ``speed`` is relative to the blocks' reference work."""

    node_id: str
    speed: float | None
    background_util: float
    utilization: float
    mem_available_bytes: int
    rss_bytes: int
    queue_depth: int
    sessions: int
    epoch: int
    last_report_s: float
    loaded_blocks: frozenset[int]
    cached_blocks: frozenset[int]
    shard_fetch_bps: float | None


@dataclass(frozen=True)
class LinkProfile:
    """A link's smoothed RTT and bandwidth (``None`` until a usable sample arrived)."""

    a: str
    b: str
    rtt_s: float | None
    bandwidth_bps: float | None
    last_observed_s: float


@dataclass(frozen=True)
class EnvironmentState:
    """E(t): everything the orchestrator believes about the cluster at ``at_s``."""

    at_s: float
    nodes: Mapping[str, NodeProfile]
    links: Mapping[tuple[str, str], LinkProfile]
    latency_s: float | None
    tokens_per_s: float
    live_sessions: int
    mean_context_tokens: float

    def link(self, a: str, b: str) -> LinkProfile | None:
        return self.links.get(link_key(a, b))

    def dead_nodes(self, now_s: float, heartbeat_timeout_s: float) -> frozenset[str]:
        """Nodes whose last report is older than ``heartbeat_timeout_s`` (orchestrator-local times)."""
        return frozenset(n for n, p in self.nodes.items() if now_s - p.last_report_s > heartbeat_timeout_s)


def link_key(a: str, b: str) -> tuple[str, str]:
    """Links are undirected: one key per unordered pair."""
    return (a, b) if a <= b else (b, a)


class RobustEwma:
    """Median of the last ``window`` samples, then an EWMA with weight ``alpha`` on that median.

    The median absorbs single outliers (a GC pause, one slow probe) so ordinary noise never trips a
    trigger; the EWMA then smooths what is left. A sustained step change moves the median after
    ``window // 2 + 1`` samples; when the median then sits more than a factor ``jump`` away from the
    EWMA, the EWMA jumps to it — a level shift a majority of samples agree on is news, not noise
    (a link falling from 400 to 5 Mbit/s must not take a dozen cycles to be believed).

    ``quantile`` above 0.5 takes a higher order statistic instead of the median, for figures whose
    noise only goes one way: scheduling delays only ever make a bandwidth probe look slower.
    """

    __slots__ = ("_samples", "alpha", "jump", "quantile", "value")

    def __init__(self, alpha: float, window: int, jump: float = 2.0, quantile: float = 0.5) -> None:
        if not 0.0 < alpha <= 1.0 or window < 1 or jump <= 1.0 or not 0.0 <= quantile <= 1.0:
            raise ValueError(
                f"need 0 < alpha <= 1, window >= 1, jump > 1, 0 <= quantile <= 1; "
                f"got {alpha}, {window}, {jump}, {quantile}"
            )
        self.alpha = alpha
        self.jump = jump
        self.quantile = quantile
        self._samples: deque[float] = deque(maxlen=window)
        self.value: float | None = None

    def add(self, sample: float) -> float:
        self._samples.append(sample)
        # Inline median (statistics.median is ~4x slower, and this runs ~1000 times per cycle).
        ordered = sorted(self._samples)
        half = len(ordered) // 2
        if self.quantile != 0.5:
            median = ordered[round(self.quantile * (len(ordered) - 1))]
        else:
            median = ordered[half] if len(ordered) % 2 else (ordered[half - 1] + ordered[half]) / 2
        prev = self.value
        if prev is None or (prev > 0 and not prev / self.jump <= median <= prev * self.jump):
            self.value = median
        else:
            self.value = prev + self.alpha * (median - prev)
        return self.value

    def reset(self) -> None:
        self._samples.clear()
        self.value = None


@dataclass(frozen=True)
class ProfilerSettings:
    """Smoothing knobs. ``alpha`` weights the newest median; ``window`` is the median's length."""

    alpha: float = 0.3
    window: int = 5
    jump: float = 2.0
    """A robust median this many times above or below the EWMA replaces it (a level shift)."""
    min_bandwidth_sample_bytes: int = 65536
    bandwidth_window: int = 6
    bandwidth_quantile: float = 0.8
    """Bandwidth samples only err low (a delayed probe), so a high order statistic of the window is
    used: a collapse is believed once most of the window agrees, a few delayed probes change nothing."""
    """Transfers smaller than this are latency-bound: they update nothing but the RTT."""


@dataclass
class _NodeTrack:
    speed: RobustEwma
    background: RobustEwma
    utilization: RobustEwma
    latest: NodeTelemetry
    last_report_s: float
    profile_speed: float | None = None
    serving: bool = False
    """The last report carried live block timings (the node hosts segments)."""


@dataclass
class _LinkTrack:
    rtt: RobustEwma
    bandwidth: RobustEwma
    last_observed_s: float


class CapacityProfiler:
    """Accumulates measurements and produces E(t). Deterministic; holds no clock.

    ``reference_decode_s`` is each block's decode seconds per token on a speed-1.0 node (the model's
    block costs); a node's speed is how much faster than that it measured, with its background load
    divided out so the planner's ``work / (speed · (1 − util))`` reproduces the measured time.
    """

    def __init__(self, reference_decode_s: Mapping[int, float], settings: ProfilerSettings | None = None):
        self.settings = settings or ProfilerSettings()
        self._reference = dict(reference_decode_s)
        self._nodes: dict[str, _NodeTrack] = {}
        self._links: dict[tuple[str, str], _LinkTrack] = {}
        self._latency = self._ewma()
        self._latency_epoch = 0
        self._workload = WorkloadObservation(0.0, 0, 0.0)
        self._workload_seen = False
        self._calibration = 1.0

    def _ewma(self) -> RobustEwma:
        return RobustEwma(self.settings.alpha, self.settings.window, self.settings.jump)

    def add_node_report(self, report: NodeTelemetry, now_s: float) -> bool:
        """Fold one node report in; returns False for a stale or duplicate report (seq not newer)."""
        track = self._nodes.get(report.node_id)
        if track is not None and report.seq <= track.latest.seq and not report.restarted:
            return False
        if track is None:
            track = _NodeTrack(self._ewma(), self._ewma(), self._ewma(), report, now_s)
            self._nodes[report.node_id] = track
        if report.background is not None:
            background = min(_UTIL_CAP, max(0.0, report.background))
        else:
            own = report.busy_s / report.interval_s if report.interval_s > 0 else 0.0
            background = min(_UTIL_CAP, max(0.0, report.utilization - own))
        track.background.add(background)
        track.utilization.add(min(1.0, max(0.0, report.utilization)))
        speed = self._speed_sample(report.block_decode_s, background)
        if report.profile_decode_s:
            # The join-time profile, with the load it was timed under divided out.
            util = min(_UTIL_CAP, report.profile_utilization)
            track.profile_speed = self._speed_sample(report.profile_decode_s, util)
        track.serving = speed is not None
        if speed is not None:
            track.speed.add(speed)
        track.latest = report
        track.last_report_s = now_s
        return True

    def _speed_sample(self, measured: Mapping[int, float], background: float) -> float | None:
        # Ratio of sums over the measured blocks, not a mean of ratios: big blocks dominate, as they
        # dominate the latency the planner predicts.
        reference = busy = 0.0
        for block in sorted(measured):
            seconds = measured[block]
            ref = self._reference.get(block)
            if ref is None or ref <= 0 or seconds <= 0:
                continue  # a block with no reference work (an embedding lookup) says nothing of speed
            reference += ref
            busy += seconds * (1.0 - background)
        return reference / busy if busy > 0 and reference > 0 else None

    def add_link_observation(self, obs: LinkObservation, now_s: float) -> None:
        key = link_key(obs.a, obs.b)
        track = self._links.get(key)
        if track is None:
            s = self.settings
            bandwidth = RobustEwma(s.alpha, s.bandwidth_window, s.jump, s.bandwidth_quantile)
            track = _LinkTrack(self._ewma(), bandwidth, now_s)
            self._links[key] = track
        if obs.rtt_s is not None and obs.rtt_s >= 0:
            track.rtt.add(obs.rtt_s)
        if obs.bandwidth_bps is not None and obs.bandwidth_bps > 0:
            track.bandwidth.add(obs.bandwidth_bps)
        elif obs.transfer_bytes >= self.settings.min_bandwidth_sample_bytes and obs.transfer_s > 0:
            one_way_s = (track.rtt.value or 0.0) / 2
            # Subtract the propagation delay only while it leaves most of the time to the bytes;
            # otherwise a noisy RTT would turn one sample into an absurd bandwidth.
            wire_s = obs.transfer_s - one_way_s if one_way_s < 0.5 * obs.transfer_s else obs.transfer_s
            track.bandwidth.add(obs.transfer_bytes * 8 / wire_s)
        track.last_observed_s = now_s

    def add_latency(self, obs: LatencyObservation) -> None:
        """Gateway step latency; samples from epochs older than the last reset are dropped."""
        if obs.epoch < self._latency_epoch:
            return
        self._latency.add(obs.latency_s)

    def set_workload(self, obs: WorkloadObservation) -> None:
        """Demand, smoothed: one monitoring cycle often sees no token at all, which is not zero demand."""
        old, a = self._workload, self.settings.alpha
        if not self._workload_seen:
            self._workload, self._workload_seen = obs, True
            return
        self._workload = WorkloadObservation(
            old.tokens_per_s + a * (obs.tokens_per_s - old.tokens_per_s),
            obs.live_sessions,
            old.mean_context_tokens + a * (obs.mean_context_tokens - old.mean_context_tokens),
        )

    def on_epoch_committed(self, epoch: int) -> None:
        """A new plan serves from now on: the latency EWMA restarts so the old chain's figures age out."""
        self._latency_epoch = epoch
        self._latency.reset()

    def forget_node(self, node_id: str) -> None:
        self._nodes.pop(node_id, None)

    def snapshot(self, now_s: float) -> EnvironmentState:
        """E(t) from what has been folded in so far; cheap enough to call every monitoring cycle."""
        calibration = self._profile_calibration()
        nodes = {node_id: self._node_profile(track, calibration) for node_id, track in self._nodes.items()}
        links = {
            key: LinkProfile(key[0], key[1], t.rtt.value, t.bandwidth.value, t.last_observed_s)
            for key, t in self._links.items()
        }
        w = self._workload
        return EnvironmentState(
            now_s, nodes, links, self._latency.value, w.tokens_per_s, w.live_sessions, w.mean_context_tokens
        )

    def _profile_calibration(self) -> float:
        """How fast serving nodes really are relative to their join profiles (median live/profile).

        Profiles are timed once, idle; live timings carry batching, contention and the serving path.
        Judging an idle node by its raw profile against a serving node's live figure would always
        favour the idle one and make segments chase measurement noise; scaled by this factor, both
        are compared alike. Kept from the last time any node served.
        """
        ratios = sorted(
            t.speed.value / t.profile_speed
            for t in self._nodes.values()
            # A heavily loaded node's figure hinges on dividing its load out: least trustworthy.
            if t.serving and t.speed.value and t.profile_speed and (t.background.value or 0.0) < 0.5
        )
        if ratios:
            half = len(ratios) // 2
            self._calibration = ratios[half] if len(ratios) % 2 else (ratios[half - 1] + ratios[half]) / 2
        return self._calibration

    @staticmethod
    def _node_profile(track: _NodeTrack, calibration: float = 1.0) -> NodeProfile:
        r = track.latest
        speed = track.speed.value
        if track.profile_speed and not (track.serving and speed):
            speed = track.profile_speed * calibration  # idle now: its profile, calibrated alike
        return NodeProfile(
            node_id=r.node_id,
            speed=speed,
            background_util=track.background.value or 0.0,
            utilization=track.utilization.value or 0.0,
            mem_available_bytes=r.mem_available_bytes,
            rss_bytes=r.rss_bytes,
            queue_depth=r.queue_depth,
            sessions=r.sessions,
            epoch=r.epoch,
            last_report_s=track.last_report_s,
            loaded_blocks=r.loaded_blocks,
            cached_blocks=r.cached_blocks,
            shard_fetch_bps=r.shard_fetch_bps,
        )


def ingest(
    profiler: CapacityProfiler,
    now_s: float,
    reports: Iterable[NodeTelemetry] = (),
    links: Iterable[LinkObservation] = (),
    latencies: Iterable[LatencyObservation] = (),
) -> EnvironmentState:
    """One monitoring cycle's profiling step: fold everything that arrived in, return E(t)."""
    for report in reports:
        profiler.add_node_report(report, now_s)
    for obs in links:
        profiler.add_link_observation(obs, now_s)
    for lat in latencies:
        profiler.add_latency(lat)
    return profiler.snapshot(now_s)
