"""CLI: `edgesplit orchestrator` — the adaptive orchestrator as a process of its own.

Run: edgesplit orchestrator CLUSTER.yaml --gateway http://HOST:8000 --state-dir DIR
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgesplit.cli.services_cmd import _load, _read_token, _resolve_model, _tls
from edgesplit.errors import ConfigError


def orchestrator(
    cluster_file: Path,
    gateway_url: str | None,
    ready_file: Path | None,
    state_dir: Path,
    admin_token_file: Path | None = None,
    interval_s: float | None = None,
    cooldown_s: float | None = None,
    http_listen: str = "127.0.0.1:0",
    pin_plan: Path | None = None,
    frozen: bool = False,
    oracle_file: Path | None = None,
    tls_dir: Path | None = None,
    tls_name: str = "orchestrator",
    improve_interval_s: float | None = None,
    start_timeout_s: float | None = None,
) -> None:
    """The adaptive orchestrator: deploy (or adopt) a plan, then monitor and reconfigure until stopped.

    Evaluation baselines (``edgesplit bench``): ``pin_plan`` deploys exactly that assignment and never
    changes it; ``frozen`` deploys the optimum for what is known at start and never changes it;
    ``oracle_file`` plans on the harness's true conditions (with ``frozen``: only at start).
    """
    import asyncio
    import json
    import logging
    import signal

    from edgesplit.orchestrator.cluster_facts import block_costs, declared_facts
    from edgesplit.orchestrator.config import OrchestratorConfig
    from edgesplit.orchestrator.core import OrchestratorCore
    from edgesplit.orchestrator.http_api import bind, controller_problem, create_app, serve, url_of
    from edgesplit.orchestrator.plans import Plan
    from edgesplit.orchestrator.service import OrchestratorService
    from edgesplit.orchestrator.signing import load_or_create_private_key
    from edgesplit.orchestrator.store import OrchestratorStore

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would drown the decisions
    # Declared facts only: the emulation section is for node agents (DESIGN §3).
    cluster = _load(cluster_file).model_copy(update={"emulation": None})
    declared_trust = {n.id: n.trusted for n in cluster.nodes}
    tls = None if tls_dir is None else _tls(tls_dir, tls_name, "orchestrator", declared_trust)[1]
    missing = [n.id for n in cluster.nodes if not n.address]
    if missing:
        raise ConfigError(f"{cluster_file}: node(s) {', '.join(missing)} need an `address: HOST:PORT`")
    state_dir.mkdir(parents=True, exist_ok=True)
    # The cluster file's thresholds and `orchestrator:` section; flags given on the command line win.
    config = OrchestratorConfig.for_cluster(
        cluster,
        state_dir,
        monitor_interval_s=interval_s,
        cooldown_s=cooldown_s,
        improvement_interval_s=improve_interval_s,
        start_timeout_s=start_timeout_s,
    )
    model_path = _resolve_model(cluster.model, cluster_file.parent)
    from edgesplit.cluster.roles import num_blocks_of

    blocks = block_costs(model_path, cluster.privacy.block_indices(num_blocks_of(model_path)))
    store = OrchestratorStore(config.state_path)
    sr = config.split_revision()
    facts = declared_facts(cluster)
    controller = _controller(blocks, facts, sr, store, config, pin_plan, frozen, oracle_file)
    core = OrchestratorCore(controller, store, load_or_create_private_key(config.key_path))
    token = _read_token(admin_token_file) if admin_token_file is not None else None
    http_sock = bind(http_listen)
    http_url = url_of(http_sock)

    def ready(plan: Plan | None) -> None:
        if plan is None:
            raise ConfigError("the orchestrator found no feasible plan for this cluster")
        summary = {
            "epoch": plan.epoch,
            "segments": [{"node": g.node_id, "start": g.start, "end": g.end} for g in plan.segments],
            "solver": str(plan.meta.get("solver", "adaptive")),
            "predicted_latency_s": plan.predicted_latency_s,
            "http_url": http_url,
        }
        if ready_file is not None:
            tmp = ready_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(summary))
            tmp.replace(ready_file)
        typer.echo(f"edgesplit orchestrator: serving epoch {plan.epoch}: {json.dumps(summary['segments'])}")

    service = OrchestratorService(
        core,
        blocks,
        {n.id: str(n.address) for n in cluster.nodes},
        cluster.source.id,
        gateway_url.rstrip("/") if gateway_url else None,
        token,
        config.service_settings(),
        echo=lambda line: typer.echo(line),
        http_url=http_url,
        tls=tls,
    )
    routers = []
    if cluster.shards.fetch:  # serve the model as shards; every signed prepare names their SHA-256
        from edgesplit.orchestrator.shard_registry import (
            DirShardStorage,
            ShardRegistry,
            prepare_store,
            shard_router,
        )

        storage = prepare_store(model_path, state_dir / "shards")
        if tls_dir is not None:  # encrypted at rest, each node given the keys of its blocks only
            from edgesplit.security.shard_release import encrypted_registry

            privacy = cluster.privacy.block_indices(num_blocks_of(model_path))
            enc_dir, release = encrypted_registry(storage.root, state_dir, tls_dir, declared_trust, privacy)
            storage = DirShardStorage(enc_dir)
            core.shard_keys = lambda plan: release([(g.node_id, g.start, g.end) for g in plan.segments])
        registry = ShardRegistry(storage)
        core.shard_offer = registry.offer(http_url)
        routers.append(shard_router(registry))
    http_app = create_app(
        controller_problem(controller, service.clock),
        extra_routers=routers,
        status=lambda: {"epoch": controller.plan.epoch if controller.plan else 0},
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        http_task = asyncio.create_task(serve(http_app, http_sock, stop))
        try:
            await service.run(stop, ready)
        finally:
            stop.set()
            await http_task

    try:
        asyncio.run(main())
    finally:
        store.close()


def _controller(
    blocks: Any,
    facts: Any,
    sr: Any,
    store: Any,
    config: Any,
    pin_plan: Path | None,
    frozen: bool,
    oracle_file: Path | None,
) -> Any:
    """The adaptive controller, or an evaluation baseline's (fixed plan, oracle) when asked for."""
    import json

    from edgesplit.orchestrator.controller import AdaptiveController
    from edgesplit.orchestrator.fixed import FixedController

    settings = config.controller_settings()
    truth = None
    if oracle_file is not None:
        from edgesplit.evaluation.oracle import OracleController, TruthSource

        if not oracle_file.exists():
            raise ConfigError(f"--oracle-file {oracle_file} does not exist")
        truth = TruthSource(oracle_file, blocks)
        if not (frozen or pin_plan):
            return OracleController(blocks, facts, sr.plan, sr.evaluate, store, settings, truth)
    pinned = None
    if pin_plan is not None:
        try:
            pinned = list(json.loads(pin_plan.read_text())["assignment"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"--pin-plan {pin_plan}: no `assignment` list in it ({exc})") from None
    if pinned is None and not frozen:
        return AdaptiveController(blocks, facts, sr.plan, sr.evaluate, store, settings)
    try:
        return FixedController(
            blocks,
            facts,
            sr.plan,
            sr.evaluate,
            store,
            settings,
            pinned=pinned,
            env_hook=None if truth is None else truth.apply,
        )
    except ValueError as exc:
        raise ConfigError(f"--pin-plan {pin_plan}: {exc}") from None


def register(app: typer.Typer) -> None:
    """Attach `orchestrator` to the root app."""

    @app.command("orchestrator")
    def orchestrator_cmd(
        cluster_file: Path = typer.Argument(..., help="CLUSTER.yaml with node addresses."),
        gateway_url: str | None = typer.Option(None, "--gateway", help="Gateway URL to commit plans to."),
        ready_file: Path | None = typer.Option(None, "--ready-file", help="Write the deployed plan here."),
        state_dir: Path = typer.Option(
            Path("."),
            "--state-dir",
            help="Folder of the signing key and the SQLite state (kept across runs).",
        ),
        admin_token_file: Path | None = typer.Option(
            None, "--admin-token-file", help="The gateway's admin token (when it was given one)."
        ),
        interval_s: float | None = typer.Option(
            None,
            "--interval",
            min=0.01,
            help="Monitoring period Δt in seconds (default: orchestrator.monitor_interval_s, 1).",
        ),
        cooldown_s: float | None = typer.Option(
            None, "--cooldown", min=0.0, help="Override the cluster file's T_cool (seconds), e.g. in tests."
        ),
        http_listen: str = typer.Option(
            "127.0.0.1:0",
            "--http-listen",
            help="HOST:PORT of GET /v1/plan/preview and /healthz (port 0: any).",
        ),
        pin_plan: Path | None = typer.Option(
            None, "--pin-plan", help="Evaluation: deploy exactly this plan JSON (`assignment`), never change."
        ),
        frozen: bool = typer.Option(
            False, "--frozen", help="Evaluation: deploy the optimum known at start, never change it."
        ),
        oracle_file: Path | None = typer.Option(
            None, "--oracle-file", help="Evaluation only: plan on the harness's true conditions (a bound)."
        ),
        tls_dir: Path | None = typer.Option(
            None, "--tls-dir", help="mTLS to the nodes: folder with ca.crt, NAME.crt/.key and node certs."
        ),
        tls_name: str = typer.Option("orchestrator", "--tls-name", help="NAME of its certificate."),
        improve_interval_s: float | None = typer.Option(
            None,
            "--improve-interval",
            min=0.01,
            help="Seconds between untriggered checks for a clearly better plan (default: the cluster "
            "file's orchestrator.improvement_interval_s, 120).",
        ),
        start_timeout_s: float | None = typer.Option(
            None,
            "--start-timeout",
            min=0.01,
            help="Seconds to wait at start for the nodes to answer; none answering is an error "
            "(default: orchestrator.start_timeout_s, 60).",
        ),
    ) -> None:
        """The adaptive orchestrator: deploy or adopt a plan, then monitor and reconfigure (signed plans)."""
        orchestrator(
            cluster_file,
            gateway_url,
            ready_file,
            state_dir,
            admin_token_file,
            interval_s,
            cooldown_s,
            http_listen,
            pin_plan,
            frozen,
            oracle_file,
            tls_dir=tls_dir,
            tls_name=tls_name,
            improve_interval_s=improve_interval_s,
            start_timeout_s=start_timeout_s,
        )
