"""`edgesplit up`: one node agent per node, the gateway and the adaptive orchestrator, supervised.

Owns the child processes: each in its own process group, logs in a run folder, readiness by ready
files, and teardown by PID (SIGTERM, then SIGKILL) on Ctrl-C, SIGTERM or the death of any child.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

from edgesplit.cluster.config import ClusterConfig
from edgesplit.cluster.live import DecisionTail, TracePlayer
from edgesplit.cluster.roles import gateway_config, node_config, num_blocks_of
from edgesplit.errors import EdgesplitError, ServiceDeadError, UserInputError
from edgesplit.transport.tls import TlsConfig, TlsFilesConfig

STOP_GRACE_S = 5.0
GROUP_GONE_S = 5.0
"""How long `stop` waits for killed grandchildren (e.g. a resource tracker) to be gone."""
POLL_S = 0.05


@dataclass
class Child:
    """One supervised process; ``log`` holds its stdout and stderr."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


@dataclass
class LocalCluster:
    """The processes of one local cluster. ``start()`` returns the gateway URL; ``stop()`` is idempotent."""

    cluster: ClusterConfig
    model_path: Path
    run_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="edgesplit-up-")))
    keep_run_dir: bool = False
    children: list[Child] = field(default_factory=list)
    addresses: dict[str, str] = field(default_factory=dict)
    gateway_url: str = ""
    plan: dict[str, Any] = field(default_factory=dict)
    orchestrator_url: str = ""
    """The orchestrator's HTTP API (GET /v1/plan/preview, /healthz), from its ready file."""
    orchestrator_args: list[str] = field(default_factory=list)
    """Extra `edgesplit orchestrator` flags (``--interval``, ``--cooldown``), e.g. for tests."""
    insecure: bool = False
    """Debugging only: plain gRPC. By default a fresh CA in ``run_dir/pki`` certifies every process."""
    admin_tls: TlsConfig | None = None
    """`edgesplit up`'s own (admin) certificate, for control calls such as the trace player's."""
    early_gateway: bool = False
    """Start the gateway alongside the node agents rather than after them (a shorter start-up on a
    busy machine); it then learns node addresses from the committed plans, so GET /v1/cluster shows
    no node telemetry. For evaluation runs, which measure nodes themselves."""
    startup_s: dict[str, float] = field(default_factory=dict)
    """Seconds each start-up stage took (certificates, nodes, gateway, orchestrator: plan + deploy)."""
    _starts: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    """How many processes each node has had (its run files are numbered by it)."""

    @property
    def pki_dir(self) -> Path:
        return self.run_dir / "pki"

    def _issue_certs(self) -> list[str]:
        """A CA and one certificate per process (node trust as the cluster file declares it); the
        flags that hand the gateway and the orchestrator their certificates."""
        from edgesplit.security.pki import Role, init_ca, issue

        init_ca(self.pki_dir)
        for node in self.cluster.nodes:
            issue(self.pki_dir, node.id, Role.NODE, node.trusted)
        for name, role in (
            ("gateway", Role.GATEWAY),
            ("orchestrator", Role.ORCHESTRATOR),
            ("up", Role.ADMIN),
        ):
            issue(self.pki_dir, name, role)
        self.admin_tls = TlsConfig.load(TlsFilesConfig.in_dir(self.pki_dir, "up"))
        return ["--tls-dir", str(self.pki_dir)]

    def start(self, timeout_s: float = 120.0) -> str:
        from edgesplit.orchestrator.signing import load_or_create_private_key, public_key_text

        deadline = time.monotonic() + timeout_s
        stage = time.monotonic()

        def done(name: str) -> None:
            nonlocal stage
            now = time.monotonic()
            self.startup_s[name] = now - stage
            stage = now

        # 0) The orchestrator's signing key (in its state folder); every node trusts its public half.
        state_dir = self.run_dir / "orchestrator"
        public_key = public_key_text(load_or_create_private_key(state_dir / "orchestrator_ed25519.pem"))
        tls_args = [] if self.insecure else self._issue_certs()
        done("certificates")
        # 1) One node agent per node, on a loopback port of its own choosing.
        ready = {node.id: self._spawn_node(node.id, public_key) for node in self.cluster.nodes}
        # 2) The gateway on the source node: with every node's address once they are ready, or (early)
        #    at once, alongside the nodes, learning addresses from the committed plan instead.
        if self.early_gateway:
            gw_ready = self._spawn_gateway(tls_args)
        for node in self.cluster.nodes:
            self.addresses[node.id] = self._await_ready(f"node {node.id}", ready[node.id], deadline)[
                "address"
            ]
        done("nodes")
        if not self.early_gateway:
            gw_ready = self._spawn_gateway(tls_args)
        self.gateway_url = self._await_ready("gateway", gw_ready, deadline)["url"]
        done("gateway")
        # 3) The orchestrator: declared facts and addresses only (no emulation section); deploys epoch 1,
        #    then monitors and reconfigures.
        orch_path = self.run_dir / "cluster.orchestrator.yaml"
        orch_path.write_text(yaml.safe_dump(orchestrator_view(self.cluster, self.addresses), sort_keys=False))
        orch_ready = self.run_dir / "orchestrator.ready"
        self._spawn(
            "orchestrator",
            [
                "orchestrator",
                str(orch_path),
                "--gateway",
                self.gateway_url,
                "--ready-file",
                str(orch_ready),
                "--state-dir",
                str(state_dir),
                *tls_args,
                *self.orchestrator_args,
            ],
        )
        self.plan = self._await_ready("orchestrator", orch_ready, deadline)
        self.orchestrator_url = str(self.plan.get("http_url", ""))
        done("orchestrator")
        return self.gateway_url

    def _spawn_node(self, node_id: str, public_key: str) -> Path:
        """Write the node's config and start it; returns its ready file."""
        cfg_path = self.run_dir / f"node-{node_id}.yaml"
        ready = self.run_dir / f"node-{node_id}.ready"
        cfg = node_config(
            self.cluster, node_id, self.model_path, "127.0.0.1:0", ready, num_blocks_of(self.model_path)
        )
        cfg["orchestrator_public_key"] = public_key
        cfg["state_dir"] = str(self.run_dir / f"node-{node_id}-state")  # its highest accepted epoch
        if self.cluster.shards.fetch:  # weights come from the orchestrator's shard registry
            del cfg["model"]
            cfg["shard_cache"] = str(self.run_dir / f"node-{node_id}-shards")
            cfg["standby_blocks"] = self.cluster.shards.standby_blocks
        if not self.insecure:
            cfg["tls"] = TlsFilesConfig.in_dir(self.pki_dir, node_id).model_dump(mode="json")
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self._spawn(f"node {node_id}", ["node", "--config", str(cfg_path)])
        return ready

    def _spawn_gateway(self, tls_args: list[str]) -> Path:
        """Write the gateway's config (the node addresses known so far, every node's PID) and start it;
        returns its ready file."""
        pids = {c.name.removeprefix("node "): c.proc.pid for c in self.children if c.name.startswith("node ")}
        gw = gateway_config(self.cluster, self.model_path, self.addresses, pids)
        gw_path = self.run_dir / "gateway.json"
        gw_path.write_text(gw.model_dump_json(indent=2))
        ready = self.run_dir / "gateway.ready"
        listen = f"127.0.0.1:{self.cluster.gateway.port}"
        args = ["gateway", "--config", str(gw_path), "--listen", listen, "--ready-file", str(ready)]
        self._spawn("gateway", [*args, *tls_args])
        return ready

    def _spawn(self, name: str, args: list[str]) -> None:
        log = self.run_dir / (name.replace(" ", "-") + ".log")
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "edgesplit.cli.main", *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: teardown reaches its children too
                preexec_fn=_die_with_parent,
            )
        self.children.append(Child(name, proc, log))

    def _await_ready(self, name: str, ready_file: Path, deadline: float) -> dict[str, Any]:
        child = next(c for c in self.children if c.name == name)
        while True:
            if ready_file.exists():
                with contextlib.suppress(json.JSONDecodeError, OSError):
                    return dict(json.loads(ready_file.read_text()))
            if child.proc.poll() is not None:
                code = child.proc.returncode
                raise ServiceDeadError(
                    f"{name} exited with code {code} before it was ready; log:\n{child.tail()}"
                )
            if time.monotonic() > deadline:
                raise ServiceDeadError(f"{name} was not ready in time; its log:\n{child.tail()}")
            time.sleep(POLL_S)

    def dead_child(self) -> Child | None:
        return next((c for c in self.children if c.proc.poll() is not None), None)

    def node_process(self, node_id: str) -> Child:
        """The newest process this cluster started for ``node_id``."""
        found = [c for c in self.children if c.name == f"node {node_id}"]
        if not found:
            raise UserInputError(f"no process for node {node_id!r}; nodes: {', '.join(self.addresses)}")
        return found[-1]

    def kill_node(self, node_id: str) -> None:
        """SIGKILL the node's process group (by the PID this cluster started) and reap it."""
        child = self.node_process(node_id)
        _signal_group(child.proc, signal.SIGKILL)
        child.proc.wait(timeout=30)

    def restart_node(
        self, node_id: str, emulation: dict[str, Any] | None = None, timeout_s: float = 90.0
    ) -> None:
        """Start a node whose process has ended again on its old address, with ``emulation`` (a node
        ``emulation`` section; default: its start-up one); returns once it is ready."""
        old = self.node_process(node_id)
        if old.proc.poll() is None:
            raise UserInputError(f"node {node_id!r} is still running (pid {old.proc.pid})")
        self.children.remove(old)  # its PID is reaped; the new process takes its name
        config = yaml.safe_load((self.run_dir / f"node-{node_id}.yaml").read_text())
        generation = self._starts[node_id] = self._starts.get(node_id, 1) + 1
        ready = self.run_dir / f"node-{node_id}-{generation}.ready"
        config.update({"listen": self.addresses[node_id], "ready_file": str(ready)})
        if emulation is not None:
            config["emulation"] = emulation
        path = self.run_dir / f"node-{node_id}-{generation}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        self._spawn(f"node {node_id}", ["node", "--config", str(path)])
        self._await_ready(f"node {node_id}", ready, time.monotonic() + timeout_s)

    def pause(self) -> None:
        """SIGSTOP every process group: the cluster takes no CPU until ``resume`` (one started ahead
        of its turn must not slow down the cluster being measured)."""
        for child in self.children:
            _signal_group(child.proc, signal.SIGSTOP)

    def resume(self) -> None:
        for child in self.children:
            _signal_group(child.proc, signal.SIGCONT)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM every process group (orchestrator, gateway, then nodes; a paused one is continued so
        it can exit), SIGKILL what is left after ``grace_s``."""
        for child in reversed(self.children):
            _signal_group(child.proc, signal.SIGTERM)
            _signal_group(child.proc, signal.SIGCONT)
        deadline = time.monotonic() + grace_s
        for child in reversed(self.children):
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            if child.proc.poll() is None:
                _signal_group(child.proc, signal.SIGKILL)
                child.proc.wait()
            else:
                _signal_group(child.proc, signal.SIGKILL)  # stray grandchildren in its group
        _await_groups_gone([c.proc.pid for c in self.children], GROUP_GONE_S)
        if not self.keep_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)


def orchestrator_view(cluster: ClusterConfig, addresses: dict[str, str]) -> dict[str, Any]:
    """The cluster file the orchestrator gets: declared facts with live addresses, emulation removed."""
    data = cluster.model_dump(mode="json", exclude={"emulation"})
    for node in data["nodes"]:
        node["address"] = addresses.get(node["id"], node.get("address"))
    return data


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _await_groups_gone(pgids: list[int], timeout_s: float) -> None:
    """Wait until no process is left in these process groups (SIGKILL is delivered asynchronously)."""
    deadline = time.monotonic() + timeout_s
    for pgid in pgids:
        while time.monotonic() < deadline and _group_alive(pgid):
            time.sleep(POLL_S)


def _group_alive(pgid: int) -> bool:
    """Some process of the group still runs (zombies waiting for a reaper do not count)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    for proc in psutil.process_iter(["status"]):
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
    return False


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if `edgesplit up` itself is killed, so nothing is orphaned."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def run_up(
    cluster: ClusterConfig,
    model_path: Path,
    timeout_s: float = 120.0,
    orchestrator_args: list[str] | None = None,
    insecure: bool = False,
) -> int:
    """Start, print the gateway URL, supervise until a signal or a child's death, stop. Returns exit code."""
    stop_reason: list[str] = []
    serving = threading.Event()

    def on_signal(signum: int, _: Any) -> None:
        stop_reason.append(signal.Signals(signum).name)
        if not serving.is_set():
            raise KeyboardInterrupt  # still starting: abandon start-up; `finally` stops what runs

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    local = LocalCluster(
        cluster, model_path, orchestrator_args=list(orchestrator_args or []), insecure=insecure
    )
    player: TracePlayer | None = None
    tail: DecisionTail | None = None
    code = 0
    try:
        print(f"edgesplit up: model {cluster.model} ({model_path}); logs in {local.run_dir}", flush=True)
        security = "INSECURE plain gRPC (--insecure)" if insecure else f"mTLS, CA in {local.pki_dir}"
        print(f"  channels: {security}", flush=True)
        url = local.start(timeout_s)
        for node_id, address in local.addresses.items():
            print(f"  node {node_id:<10} {address}", flush=True)
        segments = " -> ".join(
            f"{s['node']}[{s['start']}:{s['end']}]" for s in local.plan.get("segments", [])
        )
        print(
            f"  plan epoch {local.plan.get('epoch')}: {segments} ({local.plan.get('solver', '')})", flush=True
        )
        print(f"edgesplit gateway ready on {url}", flush=True)
        print(f"OpenAI base_url: {url}/v1   (Ctrl-C stops everything)", flush=True)
        player = TracePlayer(cluster, local.addresses, local.admin_tls, local.gateway_url)
        player.start()
        tail = DecisionTail(local.run_dir / "orchestrator.log")
        tail.start()
        serving.set()
        while not stop_reason:
            dead = local.dead_child()
            if dead is not None:
                print(
                    f"edgesplit up: {dead.name} exited with code {dead.proc.returncode}; stopping all\n"
                    f"{dead.tail()}",
                    file=sys.stderr,
                    flush=True,
                )
                code = 1
                break
            time.sleep(0.2)
    except EdgesplitError as exc:
        print(f"edgesplit: error: {exc}", file=sys.stderr, flush=True)
        code = exc.exit_code
    except KeyboardInterrupt:
        code = 130
    finally:
        if player is not None:
            player.stop()
        if tail is not None:
            tail.stop()
        local.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stop_reason:
        print(f"edgesplit up: stopped ({stop_reason[0]})", flush=True)
    return code
