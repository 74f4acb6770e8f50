"""What each evaluation mode means for the orchestrator of one local cluster (issue 6 item 2).

* ``single``   — the whole model on the source device, never changed (``--pin-plan``).
* ``cloud``    — privacy-critical blocks on the source, everything else on the cloud node (``--pin-plan``).
* ``static``   — the optimum for the true conditions at t = 0, never changed, not even after a node
  loss (``--frozen --oracle-file`` with the t = 0 truth): the strongest static baseline.
* ``adaptive`` — the orchestrator as shipped (it only knows what it measures).
* ``oracle``   — re-plans the moment the true emulated conditions change (``--oracle-file``, kept up
  to date by the harness): a bound, not a deployable mode.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edgesplit.cluster.config import ClusterConfig
from edgesplit.errors import ScenarioError

MODES = ("single", "cloud", "static", "adaptive", "oracle")
BOUNDS = frozenset({"oracle"})
"""Modes that are reference bounds, not deployable policies (labelled so in reports)."""


@dataclass(frozen=True)
class ModeSetup:
    """How to start the orchestrator for a mode, and whether the harness must keep the truth current."""

    name: str
    orchestrator_args: tuple[str, ...]
    live_truth: bool = False
    """The harness rewrites the truth file on every disturbance (the oracle)."""
    truth_at_start: bool = False
    """The orchestrator reads the truth file once, at start (static)."""


def parse_modes(text: str) -> list[str]:
    """``static,adaptive`` → ``["static", "adaptive"]``; unknown or repeated names are an error."""
    modes = [m.strip() for m in text.split(",") if m.strip()]
    if not modes:
        raise ScenarioError(f"--modes: give at least one of {', '.join(MODES)}")
    for m in modes:
        if m not in MODES:
            raise ScenarioError(f"--modes: unknown mode {m!r}; choose from {', '.join(MODES)}")
    if len(set(modes)) != len(modes):
        raise ScenarioError(f"--modes: a mode is listed twice in {text!r}")
    return modes


def cloud_node(cluster: ClusterConfig) -> str:
    """The node called ``cloud``, else the untrusted non-source node with the most memory."""
    ids = [n.id for n in cluster.nodes]
    if "cloud" in ids:
        return "cloud"
    others = [n for n in cluster.nodes if not n.source and not n.trusted]
    if not others:
        raise ScenarioError("mode `cloud` needs a node called `cloud` or an untrusted non-source node")
    return max(others, key=lambda n: (n.memory, n.id)).id


def pinned_assignment(
    mode: str, cluster: ClusterConfig, privacy_blocks: list[int], num_blocks: int
) -> list[str]:
    """The fixed block → node assignment of the ``single`` and ``cloud`` modes."""
    source = cluster.source.id
    if mode == "single":
        return [source] * num_blocks
    if mode == "cloud":
        cloud = cloud_node(cluster)
        critical = set(privacy_blocks)
        return [source if b in critical else cloud for b in range(num_blocks)]
    raise ValueError(f"mode {mode!r} has no pinned plan")


def mode_setup(
    mode: str,
    cluster: ClusterConfig,
    privacy_blocks: list[int],
    num_blocks: int,
    work_dir: Path,
    truth_path: Path,
) -> ModeSetup:
    """The orchestrator flags of ``mode``; writes the pinned plan file into ``work_dir`` when needed."""
    if mode in ("single", "cloud"):
        plan_path = work_dir / f"pinned-{mode}.json"
        assignment = pinned_assignment(mode, cluster, privacy_blocks, num_blocks)
        plan_path.write_text(json.dumps({"assignment": assignment}))
        return ModeSetup(mode, ("--pin-plan", str(plan_path)))
    if mode == "static":
        return ModeSetup(mode, ("--frozen", "--oracle-file", str(truth_path)), truth_at_start=True)
    if mode == "adaptive":
        return ModeSetup(mode, ())
    if mode == "oracle":
        return ModeSetup(mode, ("--oracle-file", str(truth_path), "--cooldown", "0"), live_truth=True)
    raise ScenarioError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
