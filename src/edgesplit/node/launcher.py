"""Starting `edgesplit node` child processes and waiting for their ready files (for `up`, tests, benchmarks).

Owns only the child's lifetime (stopped by PID, SIGTERM then SIGKILL); knows nothing of plans.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgesplit.errors import NodeUnavailableError


@dataclass
class NodeProcess:
    """One running `edgesplit node`; ``address`` is known once ``wait_ready`` returned."""

    node_id: str
    process: subprocess.Popen[bytes]
    ready_file: Path
    log_file: Path
    address: str = ""
    metrics_port: int | None = None
    info: dict[str, object] = field(default_factory=dict)
    signalled: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout_s: float = 120.0) -> str:
        """Block until the node wrote its ready file; raise if it exits or the time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.ready_file.is_file():
                self.info = json.loads(self.ready_file.read_text())
                self.address = str(self.info["address"])
                port = self.info.get("metrics_port")
                self.metrics_port = int(port) if isinstance(port, int) else None
                return self.address
            if self.process.poll() is not None:
                raise NodeUnavailableError(
                    f"node {self.node_id} exited with {self.process.returncode} before it was ready; "
                    f"log {self.log_file}:\n{self._log_tail()}"
                )
            time.sleep(0.05)
        raise NodeUnavailableError(
            f"node {self.node_id} not ready after {timeout_s:.0f} s; log {self.log_file}"
        )

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM by PID, then SIGKILL if it does not exit in ``timeout_s``; returns the exit code."""
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout_s)
        return self.process.returncode

    def terminate(self) -> None:
        """Ask once: a second SIGTERM during shutdown would kill the process mid-cleanup."""
        if not self.signalled and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            self.signalled = True

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def stop_all(nodes: Sequence[NodeProcess], timeout_s: float = 10.0) -> list[int | None]:
    """SIGTERM every node first, then wait for each (interpreter exit takes seconds; do them together)."""
    for node in nodes:
        node.terminate()
    return [node.stop(timeout_s) for node in nodes]


def spawn_node(
    node_id: str,
    workdir: Path,
    *,
    model: str | None = None,
    segments: Sequence[tuple[int, int]] = (),
    listen: str = "127.0.0.1:0",
    config: Path | None = None,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> NodeProcess:
    """Start `edgesplit node` (same interpreter) with its ready file and log under ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    ready_file = workdir / f"{node_id}.ready.json"
    ready_file.unlink(missing_ok=True)
    log_file = workdir / f"{node_id}.log"
    args = [sys.executable, "-m", "edgesplit.cli.main", "node", "--id", node_id, "--listen", listen]
    args += ["--ready-file", str(ready_file)]
    if config is not None:
        args += ["--config", str(config)]
    if model is not None:
        args += ["--model", model]
    if segments:
        args += ["--segments", ",".join(f"{s}:{e}" for s, e in segments)]
    args += list(extra_args)
    with log_file.open("wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    return NodeProcess(node_id, process, ready_file, log_file)
