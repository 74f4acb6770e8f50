"""LoopbackUp: `edgesplit up CLUSTER.yaml` as a real subprocess, ready-waited and torn down by PID."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from edgesplit.cluster.launcher import LocalCluster
from edgesplit.cluster.loader import load_cluster
from edgesplit.model.builtin import resolve_model

URL_LINE = re.compile(r"OpenAI base_url: (http://127\.0\.0\.1:\d+)/v1")


class LoopbackUp:
    """Starts `edgesplit up`, waits for the printed URL and /health, and stops it with SIGTERM by PID."""

    def __init__(self, cluster_file: Path, timeout_s: float = 150.0) -> None:
        self.cluster_file = cluster_file
        self.timeout_s = timeout_s
        self.proc: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.url = ""

    def start(self) -> str:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgesplit.cli.main", "up", str(self.cluster_file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + self.timeout_s
        while not self.url:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise RuntimeError("edgesplit up did not print its URL:\n" + self.text())
            with contextlib.suppress(queue.Empty):
                match = URL_LINE.search(self.lines.get(timeout=min(left, 0.5)))
                if match:
                    self.url = match.group(1)
        while True:  # the printed URL must already serve; poll /health to be sure
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200:
                    return self.url
            if time.monotonic() > deadline:
                raise RuntimeError("gateway never became healthy:\n" + self.text())
            time.sleep(0.1)

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def text(self) -> str:
        return "".join(self.output)

    def cluster(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/v1/cluster", timeout=10.0).json())

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM `up` (it stops its children), SIGKILL its group if it hangs. Returns its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
            return None


def pid_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def port_free(address: str) -> bool:
    """Nobody listens there any more, and a new server could bind it (TIME_WAIT is not a listener)."""
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1.0).close()
        return False
    except OSError:
        pass
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, int(port)))
        except OSError:
            return False
    return True


def kill_pids(pids: list[int]) -> None:
    """Last-resort cleanup of processes a failed test left behind (by PID, never by name)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def wait_for(what: str, check: Callable[[], Any], timeout_s: float, every_s: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy (HTTP errors count as not yet); fail after
    ``timeout_s`` naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = check()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)


@contextlib.contextmanager
def running_cluster(
    cluster_file: Path, orchestrator_args: list[str], timeout_s: float = 150.0
) -> Iterator[LocalCluster]:
    """A started ``LocalCluster`` of ``cluster_file``; every child is stopped by PID on the way out."""
    cluster = load_cluster(cluster_file)
    lc = LocalCluster(cluster, resolve_model(cluster.model), orchestrator_args=orchestrator_args)
    try:
        lc.start(timeout_s)
        yield lc
    finally:
        pids = [c.proc.pid for c in lc.children]
        lc.stop()
        kill_pids([p for p in pids if pid_alive(p)])
