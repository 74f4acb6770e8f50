"""A benchmark scenario (DESIGN §4.4): a cluster file plus workload, SLA and timed events.

Owns the schema and its validation, all done before anything starts; every error is one line naming
the file, the line and the key. Knows nothing of processes, HTTP or the modes that run it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgesplit.cluster.config import ClusterConfig, CrossReferenceError
from edgesplit.cluster.loader import KeyPath, parse_yaml_model, read_config_text
from edgesplit.errors import ScenarioError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkloadConfig(_Strict):
    """Open-loop arrivals: the same requests, at the same times, in every mode."""

    rate_rps: float = Field(gt=0)
    """Offered load, requests per second."""
    duration_s: float = Field(gt=0)
    """How long requests keep arriving, in seconds."""
    prompt_tokens: int = Field(default=16, ge=1)
    """Prompt length, in tokens (approximate: one common English word per token)."""
    output_tokens: int = Field(default=16, ge=1)
    """`max_tokens` of every request."""
    privacy_high_fraction: float = Field(default=1.0, ge=0, le=1)
    """Share of requests tagged `privacy: high`; the rest are `none`."""
    seed: int = 0
    """Seeds arrival times, prompts and privacy tags."""
    arrivals: Literal["poisson", "uniform"] = "poisson"
    """Poisson process (exponential gaps) or evenly spaced requests."""


class SlaConfig(_Strict):
    budget_ms: float = Field(default=400.0, gt=0)
    """End-to-end request latency budget, in milliseconds (the paper uses 400 ms)."""


class _Event(_Strict):
    at_s: float = Field(ge=0)
    """Seconds after the load starts."""


class LinkEvent(_Event):
    """The (undirected) link between ``a`` and ``b`` changes its bandwidth and/or RTT."""

    kind: Literal["link"]
    a: str
    b: str
    bandwidth_mbps: float | None = Field(default=None, gt=0)
    rtt_ms: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _changes_something(self) -> LinkEvent:
        if self.bandwidth_mbps is None and self.rtt_ms is None:
            raise ValueError("a link event sets bandwidth_mbps, rtt_ms or both")
        if self.a == self.b:
            raise ValueError(f"a link joins two different nodes, not {self.a!r} with itself")
        return self


class NodeLoadEvent(_Event):
    """Background load on ``node`` becomes ``load`` (share of the machine taken by other work)."""

    kind: Literal["node_load"]
    node: str
    load: float = Field(ge=0, lt=1)


class NodeKillEvent(_Event):
    """``node``'s process is killed (SIGKILL)."""

    kind: Literal["node_kill"]
    node: str


class NodeReturnEvent(_Event):
    """A killed ``node`` is started again."""

    kind: Literal["node_return"]
    node: str


Event = Annotated[
    LinkEvent | NodeLoadEvent | NodeKillEvent | NodeReturnEvent,
    Field(discriminator="kind"),
]


class Scenario(ClusterConfig):
    """A whole scenario file: the cluster keys of DESIGN §4.3 plus the keys below."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    """Names the run in results.json and reports."""
    workload: WorkloadConfig
    sla: SlaConfig = Field(default_factory=lambda: SlaConfig())
    events: list[Event] = Field(default_factory=list)
    """Timed disturbances, applied in `at_s` order."""

    @model_validator(mode="after")
    def _events_fit(self) -> Scenario:
        for path, message in event_errors(self):
            raise CrossReferenceError(path, message)
        return self

    def cluster(self) -> ClusterConfig:
        """The cluster part alone, as `edgesplit up` would read it."""
        cluster_keys = set(ClusterConfig.model_fields)
        return ClusterConfig.model_validate(self.model_dump(include=cluster_keys))

    def trusted_nodes(self) -> frozenset[str]:
        return frozenset(n.id for n in self.nodes if n.trusted)


def event_errors(scenario: Scenario) -> list[tuple[KeyPath, str]]:
    """Every (key path, message) where an event names an unknown node, falls after the end, or
    brings back a node that was never killed; ordered by event index."""
    found: list[tuple[KeyPath, str]] = []
    known = {n.id for n in scenario.nodes}
    source = next((n.id for n in scenario.nodes if n.source), None)
    end = scenario.workload.duration_s
    down: set[str] = set()

    def add(i: int, key: str, message: str) -> None:
        found.append((("events", i, key), message))

    for i in sorted(range(len(scenario.events)), key=lambda i: (scenario.events[i].at_s, i)):
        event = scenario.events[i]
        if event.at_s >= end:
            add(
                i,
                "at_s",
                f"event at {event.at_s:g} s is not before the end of the load "
                f"(workload.duration_s = {end:g}); move it earlier or lengthen the run",
            )
        for key in ("a", "b") if isinstance(event, LinkEvent) else ("node",):
            node = getattr(event, key)
            if node not in known:
                add(i, key, f"event names unknown node {node!r} (nodes: {', '.join(sorted(known))})")
        if isinstance(event, NodeKillEvent):
            if event.node == source:
                add(i, "node", f"the source node {event.node!r} runs the gateway and cannot be killed")
            elif event.node in down:
                add(i, "node", f"node {event.node!r} is already down at {event.at_s:g} s")
            down.add(event.node)
        elif isinstance(event, NodeReturnEvent):
            if event.node in known and event.node not in down:
                add(i, "node", f"node {event.node!r} returns at {event.at_s:g} s but was not killed before")
            down.discard(event.node)
    return sorted(found, key=lambda item: item[0][1])


def load_scenario(path: Path) -> Scenario:
    """Parse and validate a scenario file; raises ``ScenarioError`` naming the bad key and line."""
    return parse_scenario(read_config_text(path, "scenario file", ScenarioError), str(path))


def parse_scenario(text: str, name: str = "<scenario>") -> Scenario:
    return parse_yaml_model(
        text,
        name,
        Scenario,
        ScenarioError,
        "a scenario is a mapping with `name`, `model`, `nodes`, `workload`",
        list_allowed_keys=False,  # an event's keys depend on its kind: a list would mislead
    )
