"""A node's self-measurement: CPU (psutil), RSS, GPU when NVML finds one, per-segment EWMA latency,
activation bytes, queue depth, sessions — as a snapshot for the gRPC call and as Prometheus metrics.

Reports only what this process measured (plus the emulated background load, which on real hardware
would show up in the same CPU figure); never reads the orchestrator's view.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from edgesplit.node.segments import HostedSegment
from edgesplit.wire.messages import SegmentStats, TelemetrySnapshot

_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _gpu_utilization() -> float:
    """Mean GPU utilisation 0..1 over visible NVIDIA GPUs; -1 when NVML or a GPU is absent."""
    try:
        import pynvml

        pynvml.nvmlInit()
        count = int(pynvml.nvmlDeviceGetCount())
        if count == 0:
            return -1.0
        rates = [
            pynvml.nvmlDeviceGetUtilizationRates(pynvml.nvmlDeviceGetHandleByIndex(i)).gpu
            for i in range(count)
        ]
        return float(sum(rates)) / count / 100
    except Exception:
        return -1.0


class NodeTelemetry:
    """Counters the service updates and a snapshot builder; the registry is private to this node."""

    def __init__(self, node_id: str, registry: CollectorRegistry | None = None) -> None:
        self.node_id = node_id
        self.registry = registry or CollectorRegistry()
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # prime: the next call measures since now
        self._cpus = psutil.cpu_count() or 1
        self._started = time.monotonic()
        self.bytes_in = 0
        self.bytes_out = 0
        self.seq = 0
        r = self.registry
        self.m_bytes = Counter(
            "edgesplit_activation_bytes", "Activation bytes through this node", ["direction"], registry=r
        )
        self.m_steps = Counter("edgesplit_node_steps", "Steps this node finished", ["outcome"], registry=r)
        self.m_compute = Histogram(
            "edgesplit_stage_compute_seconds",
            "Measured compute (incl. emulated wait) per batch and segment",
            ["segment"],
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.m_queue_time = Histogram(
            "edgesplit_stage_queue_seconds",
            "Time a step waited for the compute thread",
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.m_send = Histogram(
            "edgesplit_hop_send_seconds",
            "Encode plus emulated link wait before handing a message to gRPC",
            buckets=_SECONDS_BUCKETS,
            registry=r,
        )
        self.m_cpu = Gauge("edgesplit_node_cpu_utilization_ratio", "CPU utilisation 0..1", registry=r)
        self.m_rss = Gauge("edgesplit_node_resident_memory_bytes", "Process resident memory", registry=r)
        self.m_queue = Gauge(
            "edgesplit_node_queued_steps", "Steps waiting for the compute thread", registry=r
        )
        self.m_sessions = Gauge("edgesplit_node_active_sessions", "Sessions holding a KV cache", registry=r)
        self.m_epoch = Gauge("edgesplit_config_epoch", "Highest plan epoch this node accepted", registry=r)
        self.m_ewma = Gauge(
            "edgesplit_segment_latency_seconds",
            "EWMA of measured compute: per prefill token (phase=prefill) or per decode batch (phase=decode)",
            ["segment", "phase"],
            registry=r,
        )

    def count_in(self, nbytes: int) -> None:
        self.bytes_in += nbytes
        self.m_bytes.labels("in").inc(nbytes)

    def count_out(self, nbytes: int) -> None:
        self.bytes_out += nbytes
        self.m_bytes.labels("out").inc(nbytes)

    def snapshot(
        self,
        segments: Iterable[HostedSegment],
        queue_depth: int,
        epochs: Iterable[int],
        background_load: float,
        busy_s_total: float = 0.0,
        memory_cap_bytes: int | None = None,
    ) -> TelemetrySnapshot:
        """Measure now; also refreshes the Prometheus gauges so both views agree."""
        own = self._process.cpu_percent(None) / 100 / self._cpus
        cpu = min(1.0, own + background_load)
        rss = self._process.memory_info().rss
        segments = list(segments)
        available = psutil.virtual_memory().available
        if memory_cap_bytes is not None:
            available = min(available, max(0, memory_cap_bytes - sum(s.shape.param_bytes for s in segments)))
        block_decode: dict[int, float] = {}
        block_prefill: dict[int, float] = {}
        for s in segments:
            if s.counters.decode_s_per_step > 0:
                block_decode.update(s.shape.per_block(s.counters.decode_s_per_step, prefill=False))
            if s.counters.prefill_s_per_token > 0:
                block_prefill.update(s.shape.per_block(s.counters.prefill_s_per_token, prefill=True))
        self.seq += 1
        stats = tuple(
            SegmentStats(
                start=s.shape.start,
                end=s.shape.end,
                prefill_s_per_token=s.counters.prefill_s_per_token,
                decode_s_per_step=s.counters.decode_s_per_step,
                steps=s.counters.steps,
                sessions=len(s.sessions),
            )
            for s in sorted(segments, key=lambda s: (s.shape.start, s.shape.end))
        )
        sessions = sum(stat.sessions for stat in stats)
        epoch_list = tuple(sorted(epochs))
        self.m_cpu.set(cpu)
        self.m_rss.set(rss)
        self.m_queue.set(queue_depth)
        self.m_sessions.set(sessions)
        if epoch_list:
            self.m_epoch.set(epoch_list[-1])
        for stat in stats:
            label = f"{stat.start}:{stat.end}"
            self.m_ewma.labels(label, "prefill").set(stat.prefill_s_per_token)
            self.m_ewma.labels(label, "decode").set(stat.decode_s_per_step)
        return TelemetrySnapshot(
            node_id=self.node_id,
            cpu_utilization=cpu,
            rss_bytes=rss,
            gpu_utilization=_gpu_utilization(),
            segments=stats,
            activation_bytes_in=self.bytes_in,
            activation_bytes_out=self.bytes_out,
            queue_depth=queue_depth,
            active_sessions=sessions,
            epochs=epoch_list,
            uptime_s=time.monotonic() - self._started,
            block_decode_s=block_decode,
            block_prefill_s=block_prefill,
            busy_s_total=busy_s_total,
            mem_available_bytes=available,
            seq=self.seq,
        )
