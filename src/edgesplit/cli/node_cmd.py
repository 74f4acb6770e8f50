"""CLI: `edgesplit node` — run one node agent (a gRPC server hosting model segments).

Run: edgesplit node --config NODE.yaml
     edgesplit node --id mec1 --model builtin:llama-tiny --segments 0:3 --listen 0.0.0.0:50051
Prints `edgesplit node ID ready on HOST:PORT` once serving (and writes --ready-file), so launchers
can wait for readiness; SIGINT/SIGTERM stop it cleanly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgesplit.errors import ConfigError


def _parse_segments(text: str) -> list[tuple[int, int]]:
    """`0:3,3:9` -> [(0, 3), (3, 9)] (block indices, end exclusive)."""
    ranges = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        start, sep, end = part.partition(":")
        if not sep or not start.isdigit() or not end.isdigit():
            raise ConfigError(f"bad segment {part!r}; write START:END with END exclusive, e.g. 0:3,3:9")
        ranges.append((int(start), int(end)))
    return ranges


def build_config(
    config: Path | None,
    node_id: str | None,
    listen: str | None,
    advertise: str | None,
    model: str | None,
    shard_dir: Path | None,
    segments: str | None,
    ready_file: Path | None,
    metrics_port: int | None,
    threads: int | None = None,
    orchestrator_public_key: str | None = None,
    allow_unsigned_plans: bool = False,
    tls_dir: Path | None = None,
    shard_cache: Path | None = None,
    standby_blocks: int | None = None,
) -> Any:
    """A NodeConfig from the YAML file (if any) with flags overriding its keys."""
    import yaml
    from pydantic import ValidationError

    from edgesplit.node.config import NodeConfig

    data: dict[str, Any] = {}
    if config is not None:
        try:
            loaded = yaml.safe_load(config.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read node config {config}: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"node config {config} must be a YAML mapping")
        data.update(loaded)
    overrides = {
        "node_id": node_id,
        "listen": listen,
        "advertise": advertise,
        "model": model,
        "shard_dir": shard_dir,
        "segments": _parse_segments(segments) if segments else None,
        "ready_file": ready_file,
        "metrics_port": metrics_port,
        "torch_threads": threads,
        "orchestrator_public_key": orchestrator_public_key,
        "allow_unsigned_plans": allow_unsigned_plans or None,
        "shard_cache": shard_cache,
        "standby_blocks": standby_blocks,
    }
    data.update({k: v for k, v in overrides.items() if v is not None})
    if tls_dir is not None:
        name = str(data.get("node_id", ""))
        data["tls"] = {
            "ca_cert": tls_dir / "ca.crt",
            "cert": tls_dir / f"{name}.crt",
            "key": tls_dir / f"{name}.key",
        }
    try:
        return NodeConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        where = f" in {config}" if config else ""
        raise ConfigError(f"bad node config key `{key}`{where}: {first['msg']}") from None


def run(config: Any) -> None:
    """Serve until SIGINT/SIGTERM."""
    import asyncio
    import logging
    import signal

    from edgesplit.node.agent import NodeAgent

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if config.torch_threads is not None:
        import torch

        torch.set_num_threads(config.torch_threads)  # this process only: it is a node entry point

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        agent = NodeAgent(config)

        def ready(address: str) -> None:
            typer.echo(f"edgesplit node {config.node_id} ready on {address}")

        await agent.run(stop, on_ready=ready)

    asyncio.run(main())


def register(app: typer.Typer) -> None:
    """Attach `edgesplit node` to the root app."""

    @app.command("node")
    def node(
        config: Path | None = typer.Option(None, "--config", help="NODE.yaml (keys of NodeConfig)."),
        node_id: str | None = typer.Option(None, "--id", help="This node's id in plans and routes."),
        listen: str | None = typer.Option(None, "--listen", help="HOST:PORT to serve on (port 0: any)."),
        advertise: str | None = typer.Option(None, "--advertise", help="HOST:PORT peers should dial."),
        model: str | None = typer.Option(None, "--model", help="Checkpoint folder or builtin:ARCH-PRESET."),
        shard_dir: Path | None = typer.Option(None, "--shard-dir", help="Shard store to load blocks from."),
        segments: str | None = typer.Option(None, "--segments", help="Start-up segments, e.g. 0:3,7:9."),
        ready_file: Path | None = typer.Option(
            None, "--ready-file", help="Write address JSON here when ready."
        ),
        metrics_port: int | None = typer.Option(None, "--metrics-port", help="Prometheus port (0: any)."),
        threads: int | None = typer.Option(None, "--threads", help="Torch intra-op threads for this node."),
        orchestrator_public_key: str | None = typer.Option(
            None, "--orchestrator-public-key", help="ed25519:BASE64; only plans signed by it are obeyed."
        ),
        allow_unsigned_plans: bool = typer.Option(
            False, "--allow-unsigned-plans", help="Development only: obey unsigned plans (no key given)."
        ),
        tls_dir: Path | None = typer.Option(
            None, "--tls-dir", help="mTLS: folder with ca.crt, ID.crt, ID.key (`edgesplit certs`)."
        ),
        shard_cache: Path | None = typer.Option(
            None, "--shard-cache", help="Shard cache folder, filled from the orchestrator's shard registry."
        ),
        standby_blocks: int | None = typer.Option(
            None, "--standby-blocks", min=0, help="Also cache this many blocks beside each segment."
        ),
    ) -> None:
        """Run one node agent: host model segments and serve steps over gRPC."""
        run(
            build_config(
                config,
                node_id,
                listen,
                advertise,
                model,
                shard_dir,
                segments,
                ready_file,
                metrics_port,
                threads,
                orchestrator_public_key,
                allow_unsigned_plans,
                tls_dir,
                shard_cache,
                standby_blocks,
            )
        )
